"""CSV cells a spreadsheet would not run: text that starts like a formula (`=`, `+`,
`-`, `@`, a tab or a carriage return; OWASP "CSV injection") is written with a leading
apostrophe, which spreadsheets show as text. For text only: an amount such as "-5.00"
is a number and stays as it is."""

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(text: str | None) -> str:
    if text is None:
        return ""
    return f"'{text}" if text.startswith(FORMULA_START) else text
