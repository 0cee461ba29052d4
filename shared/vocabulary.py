"""Words several services use for the same thing. Vocabulary only, no rules: a
province code means the same in a venture, a facility and a report."""

from typing import Literal

Province = Literal[
    "punjab",
    "sindh",
    "khyber_pakhtunkhwa",
    "balochistan",
    "islamabad_capital_territory",
    "gilgit_baltistan",
    "azad_jammu_and_kashmir",
]
