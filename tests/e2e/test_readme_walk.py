"""The README walk: `jvreg dev` (what `make dev` runs), then every curl example of the
README's "The HTTP API" and "How regulators subscribe" sections, read out of README.md
itself so the walk follows the README as it changes, then the refusals the README
describes. An expected answer is one log line: the walk leaves no traceback in any
process's log, and a correlation id sent with one request is in the log lines of the
gateway, of the service that carried it out and of a consumer of its event."""

import contextlib
import json
import re
import shlex
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ops.processes import free_port, wait_until

from support import Api, DevProcess
from webhook_receiver import WebhookReceiver

README = Path(__file__).resolve().parents[2] / "README.md"
# The part of the README whose examples are walked, from heading to heading.
WALKED_SECTIONS = ("## The HTTP API", "## Broker users")
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)
# `export VID=jv_…` and `sub_…` stand for an id the walk learns from an earlier answer.
PLACEHOLDER = re.compile(r"\b([a-z]+(?:_[a-z]+)?)_…")
# A comment stating an answer: `# 201 Created`, or after `| jq .status`: `# "operational"`.
EXPECTED_STATUS = re.compile(r"^#?\s*(\d{3})\b")
TRACEBACK = "Traceback (most recent call last)"
EVENTUAL_SECONDS = 30
EDGE_REQUEST_ID = f"readme-walk-edge-{uuid.uuid4().hex[:8]}"


@dataclass
class Example:
    """One command of the README: its shell text, and what the README says it answers."""

    text: str
    comment: str = ""
    shown: dict | None = None  # the JSON the README shows after it

    @property
    def problem(self) -> dict | None:
        """The problem document of a refusal the README shows."""
        if self.shown and str(self.shown.get("type", "")).startswith("/problems/"):
            return self.shown
        return None


@dataclass
class Answer:
    status: int
    body: object
    headers: dict = field(default_factory=dict)


def walked_part(readme: str) -> str:
    start, end = (readme.index(f"\n{heading}\n") for heading in WALKED_SECTIONS)
    return readme[start:end]


def commands_of(block: str) -> list[tuple[str, str]]:
    """Each shell command of a block, with the comment on its line or, when that says
    what it answers (`# 201 Created`, `# → {...}`), on the line below: (command, comment)."""
    commands: list[tuple[str, str]] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            answer = re.match(r"\s*#\s*((?:\d{3}|→).*)", line)
            if commands and answer and not commands[-1][1]:
                commands[-1] = (commands[-1][0], answer.group(1))
            continue
        pending += line + "\n"
        if pending.rstrip().endswith("\\") or not complete(pending):
            continue
        command, comment = split_comment(pending.replace("\\\n", " "))
        commands.append((command.strip(), comment.strip()))
        pending = ""
    assert not pending, f"an unfinished command in the README: {pending}"
    return commands


def complete(text: str) -> bool:
    """Whether `text` is a whole command: no quote left open, no `$(` left unclosed."""
    try:
        shlex.split(text)
    except ValueError:
        return False
    return "$(" not in text or text.rstrip().endswith(")")


def split_comment(text: str) -> tuple[str, str]:
    """The command and its trailing comment (after a `#` outside quotes)."""
    quote = None
    for index, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1].isspace()):
            return text[:index], text[index + 1 :]
    return text, ""


def readme_examples(readme: str) -> list[Example]:
    """The commands of every bash block that talks to the API (curl), each with the
    JSON document the README shows after it, if any: a refusal's problem, or a figure."""
    examples: list[Example] = []
    for match in FENCE.finditer(walked_part(readme)):
        language, block = match.groups()
        if language == "json" and examples and examples[-1].shown is None:
            examples[-1].shown = json.loads(block)
        elif language == "bash" and "curl " in block:
            examples.extend(Example(command, comment) for command, comment in commands_of(block))
    return examples


class Walk:
    """Runs README commands as a shell would, with curl's options the README uses done
    by `requests`; ids and keys shown as `…` are taken from the answers before."""

    def __init__(self, url: str, ops_key: str, webhook_url: str):
        self.url = url
        self.ops_key = ops_key
        self.webhook_url = webhook_url
        self.variables: dict[str, str] = {}
        self.answers: list[Answer] = []
        self.http = requests.Session()

    def run(self, example: Example, headers: dict | None = None) -> Answer | None:
        words = shlex.split(example.text)
        if words[0] == "export" or re.fullmatch(r"\w+=(?!\$\()\S*", words[0]):
            name, _, value = words[-1].partition("=")
            self.variables[name] = self.resolve(name, self.expand(value), example.comment)
            return None
        command = PLACEHOLDER.sub(
            lambda match: self.learned(match.group(1)), self.expand(example.text)
        )
        assignment = re.fullmatch(r"(\w+)=\$\((.*)\)", command, re.DOTALL)
        if assignment:
            name, inner = assignment.groups()
            answer, value = self.curl(inner, headers)
            assert answer.status < 400, (example.text, answer.status, answer.body)
            self.variables[name] = str(value)
            return answer
        words = shlex.split(command)
        if words[0] != "curl":
            return None  # the command line's examples (`jvreg watch`) are not HTTP
        answer, value = self.curl(command, headers)
        if expected := re.match(r"#?\s*(\"[^\"]*\"|\d+(?:\.\d+)?)\s*$", example.comment or "-"):
            # A figure the README states, there at once (the plant's status right after
            # its licence's grant included).
            assert value == json.loads(expected.group(1)), (example.text, value)
        if example.shown and not example.problem:
            assert isinstance(value, dict), (example.text, value)
            assert {key: value.get(key) for key in example.shown} == example.shown
        return answer

    def expand(self, text: str) -> str:
        def value(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            assert name in self.variables, f"the README uses ${name} before setting it"
            return self.variables[name]

        return re.sub(r"\$\{(\w+)\}|\$([A-Z]\w*)", value, text)

    def resolve(self, name: str, value: str, comment: str) -> str:
        """`export NAME=value`; a value shown as `prefix_…` is learned: the registry's
        URL, the ops key make dev printed, or a key or id from an answer (created first
        when the comment says how, as the regulator key is)."""
        if name == "JV":
            return self.url
        if "…" not in value:
            return value
        prefix = PLACEHOLDER.search(value).group(1)
        if prefix == "jvk_ops":
            return self.ops_key
        if "curl" in comment:
            how = comment.split("curl", 1)[1].replace(
                "…", f'-H "Authorization: Bearer {self.ops_key}"'
            )
            self.curl("curl " + self.expand(how), None)
        return self.learned(prefix)

    def learned(self, prefix: str) -> str:
        for answer in reversed(self.answers):
            if isinstance(answer.body, dict):
                for value in answer.body.values():
                    if isinstance(value, str) and value.startswith(prefix + "_"):
                        return value
        raise AssertionError(f"no answer so far holds a {prefix}_… value")

    def curl(self, command: str, headers: dict | None) -> tuple[Answer, object]:
        """curl with -s/-i, -X, -H and --json, piped to `jq [-r] .path` or not."""
        command, _, pipe = command.partition("|")
        words = shlex.split(command)
        assert words[0] == "curl", command
        method, url, body = None, None, None
        sent = dict(headers or {})
        options = iter(words[1:])
        for word in options:
            if word == "-X":
                method = next(options)
            elif word == "-H":
                header, _, header_value = next(options).partition(":")
                sent[header.strip()] = header_value.strip()
            elif word == "--json":
                body = next(options)
                sent.setdefault("Content-Type", "application/json")
                sent.setdefault("Accept", "application/json")
            elif word.startswith("-"):
                assert set(word[1:]) <= {"s", "i"}, f"curl option {word} not walked"
            else:
                url = word
        if body is not None:
            # Webhooks go to this machine, as the README says to try them.
            body = re.sub(r"https://[^\"]+/hooks/[^\"]*", self.webhook_url, body)
        method = method or ("POST" if body is not None else "GET")
        # Once, as pasted: what a request has just created, the next one may use (read
        # your writes), so no answer is a 503 to try again.
        response = self.http.request(method, url, data=body, headers=sent, timeout=30)
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        answer = Answer(response.status_code, parsed, dict(response.headers))
        self.answers.append(answer)
        if not pipe.strip():
            return answer, parsed
        jq = shlex.split(pipe)
        assert jq[0] == "jq", pipe
        value = parsed
        for key in jq[-1].strip(".").split("."):
            value = value[key] if key else value
        return answer, value


def expected_status(example: Example) -> int | None:
    if example.problem:
        return example.problem["status"]
    if match := EXPECTED_STATUS.match(example.comment):
        return int(match.group(1))
    return None


def test_the_readme_examples_are_found():
    examples = readme_examples(README.read_text())
    curls = [example for example in examples if "curl" in example.text]
    assert len(curls) >= 20, [example.text for example in examples]
    refusals = [example for example in examples if example.problem]
    assert [example.problem["status"] for example in refusals] == [422]
    assert any(expected_status(example) == 201 for example in examples)


def test_walking_the_readme_logs_no_traceback_and_one_correlation_id(dev_env, tmp_path):
    dev_env.update(
        JVREG_LOG_FORMAT="json",
        # The README's way to try webhooks on one machine.
        JVREG_WEBHOOK_ALLOW_PRIVATE="true",
    )
    examples = readme_examples(README.read_text())
    correlation_id = f"readme-walk-{uuid.uuid4().hex[:12]}"
    echoed = None
    dev = DevProcess(dev_env, tmp_path, free_port())
    try:
        dev.wait_for("bootstrap ops key:")
        url, ops_key = dev.value_after("is up at"), dev.value_after("bootstrap ops key:")
        with WebhookReceiver() as receiver:
            walk = Walk(url, ops_key, receiver.url + "/hook")
            for example in examples:
                # The licence decision carries the id: the gateway, licensing and the
                # consumers of license.granted (facilities, notifications) log it.
                traced = '"to": "granted"' in example.text
                answer = walk.run(example, {"X-Request-Id": correlation_id} if traced else None)
                if answer is None:
                    continue
                want = expected_status(example)
                assert (answer.status == want) if want else answer.status < 400, (
                    example.text,
                    answer.status,
                    answer.body,
                )
                if example.problem:
                    assert answer.body["type"] == example.problem["type"]
                    assert answer.body["detail"] == example.problem["detail"]
                    locations = [error["loc"] for error in answer.body["errors"]]
                    assert locations == [error["loc"] for error in example.problem["errors"]]
                if traced:
                    echoed = answer.headers.get("X-Request-Id")
            refuse_as_the_readme_describes(walk, url, ops_key)

        def consumers_logged_it() -> bool:
            return {"facilities", "notifications"} & set(services_logging(dev, correlation_id))

        with contextlib.suppress(TimeoutError):  # asserted below, after the tracebacks
            wait_until(consumers_logged_it, EVENTUAL_SECONDS, "a consumer's line with the id")
    finally:
        exit_code = dev.interrupt()
    output = dev.output()
    (tmp_path / "dev.log").write_text(output)
    assert exit_code == 0, output[-3000:]
    assert output.count(TRACEBACK) == 0, f"{output.count(TRACEBACK)} tracebacks:\n" + tracebacks(
        output
    )
    assert echoed == correlation_id
    assert services_logging(dev, EDGE_REQUEST_ID) == ["gateway", "gateway"]  # refusal, access
    logging_it = set(services_logging(dev, correlation_id))
    assert {"gateway", "licensing"} <= logging_it and consumers_logged_it(), logging_it
    not_json = [line for _, line in process_lines(dev) if not is_json_object(line)]
    assert not_json == [], not_json[:10]


def refuse_as_the_readme_describes(walk: Walk, url: str, ops_key: str) -> None:
    """The refusals the README's API section describes, each one line in the log."""
    venture_id = walk.variables["VID"]
    investor = Api(url, walk.variables["KEY"])
    unknown = Api(url, "jvk_" + "x" * 43)
    assert unknown.get("/v1/ventures").status_code == 401
    suspend = {"to": "suspended", "reason": "a regulator's decision"}
    assert investor.post(f"/v1/ventures/{venture_id}/status", json=suspend).status_code == 403
    assert investor.get("/v1/ventures/jv_000000000000000000000000").status_code == 404
    stale = investor.patch(
        f"/v1/ventures/{venture_id}", json={"description": "x"}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert (
        investor.patch(f"/v1/ventures/{venture_id}", json={"description": "x"}).status_code == 428
    )
    ops = Api(url, ops_key)
    illegal = ops.post(
        f"/v1/ventures/{venture_id}/status", json={"to": "registered", "reason": "back"}
    )
    assert illegal.status_code == 409
    # Refused at the edge, before any worker: the answer and the line still name the request.
    refused = ops.post(
        "/v1/ventures",
        data="x",
        headers={"Content-Type": "text/plain", "X-Request-Id": EDGE_REQUEST_ID},
    )
    assert refused.status_code == 415 and refused.headers["X-Request-Id"] == EDGE_REQUEST_ID


def process_lines(dev: DevProcess) -> list[tuple[str, str]]:
    """(service, line) for every line a service process wrote: `[service] line`."""
    lines = []
    for line in dev.lines:
        if match := re.match(r"\[(\w+)\] (.*)", line.rstrip("\n")):
            lines.append(match.groups())
    return lines


def services_logging(dev: DevProcess, correlation_id: str) -> list[str]:
    return [
        service
        for service, line in process_lines(dev)
        if is_json_object(line) and json.loads(line).get("correlation_id") == correlation_id
    ]


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def tracebacks(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if TRACEBACK in line)[:5000]
