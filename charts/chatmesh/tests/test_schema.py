"""values.schema.json refuses bad values before anything renders, and says
where. Each file in bad-values/ is layered over ci/minimal.yaml and lists
the text helm's error must contain in `# expect:` lines."""

from pathlib import Path

import pytest

import chart

BAD = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))


def test_there_are_enough_cases():
    assert len(BAD) >= 5


@pytest.mark.parametrize("bad", BAD, ids=[b.stem for b in BAD])
def test_bad_values_are_refused_with_a_clear_message(bad):
    expected = [l.split(":", 1)[1].strip() for l in bad.read_text().splitlines()
                if l.startswith("# expect:")]
    assert expected, f"{bad.name} has no '# expect:' line"
    with pytest.raises(chart.RenderError) as refused:
        chart.render((chart.CHART / "ci" / "minimal.yaml", bad))
    message = str(refused.value)
    assert "values don't meet the specifications of the schema" in message
    for text in expected:
        assert text in message, f"{bad.name}: {text!r} not in:\n{message}"


def test_the_defaults_alone_name_every_required_value():
    with pytest.raises(chart.RenderError) as refused:
        chart.render()
    for path in ("/redis/nodes", "/kafka/brokers", "/postgres/directory/host",
                 "/shards/databases", "/media/s3/endpoint", "/media/s3/bucket"):
        assert path in str(refused.value)
