"""`jvreg export`'s arguments, refused before anything is asked of the registry."""

from click.testing import CliRunner

from ops.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["export", *args], env={"JVREG_API_KEY": None})


def test_each_export_takes_only_its_own_formats():
    refused = run("ventures", "--format", "iati")
    assert refused.exit_code == 2
    assert "ventures exports as csv or jsonl" in refused.output
    assert "investments exports as csv or iati" in run("investments", "--format", "jsonl").output


def test_flows_need_a_key_and_only_flows_are_exported_per_venture():
    assert "need an API key" in run("investments").output
    assert "only investment flows" in run("licenses", "--venture", "jv_x").output
