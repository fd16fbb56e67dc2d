"""Which topics each command needs, with which partition counts, and the refusal of a topic
whose count differs (processors/topics.py; the broker side is tests/integration/test_recipe.py)."""

from __future__ import annotations

import pytest

from camtopo.settings import Settings
from processors.topics import TopicMismatch, TopicSpec, check_partitions, pipeline_topics

SETTINGS = Settings(
    kafka={"occupancy_partitions": 8},
    redis={"shards": 64},
    partitioned={"ranges_retention_hours": 2.0},
)


def _counts(specs: list[TopicSpec]) -> dict[str, int]:
    return {s.name: s.partitions for s in specs}


def test_each_scope_names_the_topics_its_commands_use_with_the_configured_counts() -> None:
    assert _counts(pipeline_topics(SETTINGS, "occupancy")) == {"occupancy": 8}
    assert _counts(pipeline_topics(SETTINGS, "single")) == {
        "occupancy": 8,
        "occupancy-dead-letter": 1,
        "topology-changes": 1,
    }
    everything = pipeline_topics(SETTINGS, "all")
    assert _counts(everything) == {
        "occupancy": 8,
        "occupancy-dead-letter": 1,
        "topology-changes": 1,
        "occupancy-ranges": 8,
        "camtopo-count-shards": 64,
    }
    ranges = next(s for s in everything if s.name == "occupancy-ranges")
    assert ranges.config == {"retention.ms": str(2 * 3_600_000)}


def test_topic_names_and_counts_follow_the_settings() -> None:
    settings = Settings(
        kafka={
            "occupancy_topic": "occ",
            "occupancy_partitions": 3,
            "dead_letter_topic": "dead",
            "topology_changes_topic": "changes",
        },
        partitioned={"ranges_topic": "ranges", "counter_shards_topic": "shards"},
        redis={"shards": 6},
    )
    assert _counts(pipeline_topics(settings)) == {
        "occ": 3,
        "dead": 1,
        "changes": 1,
        "ranges": 3,
        "shards": 6,
    }


def test_missing_topics_and_matching_counts_pass() -> None:
    specs = pipeline_topics(SETTINGS)
    check_partitions(specs, {})
    check_partitions(specs, _counts(specs))
    check_partitions(specs, {"unrelated": 1, "occupancy": 8})


def test_dead_letters_and_changes_may_have_any_count() -> None:
    specs = pipeline_topics(SETTINGS)
    check_partitions(specs, {"occupancy-dead-letter": 3, "topology-changes": 4})


def test_an_auto_created_occupancy_topic_is_refused_with_what_to_do() -> None:
    with pytest.raises(TopicMismatch) as caught:
        check_partitions(pipeline_topics(SETTINGS, "single"), {"occupancy": 1})
    exc = caught.value
    assert (exc.topic, exc.found, exc.wanted) == ("occupancy", 1, 8)
    assert exc.setting == "CAMTOPO_OCCUPANCY_PARTITIONS"
    message = str(exc)
    assert "'occupancy' has 1 partition(s)" in message
    assert "CAMTOPO_OCCUPANCY_PARTITIONS is 8" in message
    assert "recreate the topic with 8 partitions" in message
    assert "CAMTOPO_OCCUPANCY_PARTITIONS=1" in message
    # The command line turns ValueError / OSError into one line, not a traceback.
    assert isinstance(exc, ValueError)


@pytest.mark.parametrize(
    ("topic", "found", "setting"),
    [
        ("occupancy-ranges", 4, "CAMTOPO_OCCUPANCY_PARTITIONS"),
        ("camtopo-count-shards", 8, "CAMTOPO_REDIS_SHARDS"),
    ],
)
def test_the_partitioned_pipelines_topics_are_checked_too(
    topic: str, found: int, setting: str
) -> None:
    with pytest.raises(TopicMismatch) as caught:
        check_partitions(pipeline_topics(SETTINGS), {topic: found})
    assert (caught.value.topic, caught.value.found, caught.value.setting) == (topic, found, setting)
