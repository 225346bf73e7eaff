"""Danbooru dumps: both layouts read and filtered, packed on Beam exactly as in one process.

Beam's local runner starts worker processes that import TensorFlow, which takes tens of
seconds on a small machine, so only two tests run Beam; each checks a lot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from click.testing import CliRunner

from manga_pix2pix.cli import main
from manga_pix2pix.dataset_build import pack
from manga_pix2pix.errors import UserError
from manga_pix2pix.imageio import decode_image
from tfds_danbooru import dump
from tfds_danbooru.danbooru import danbooru_dataset_builder as dbb
from tfds_danbooru.danbooru import make_dummy_data, make_dummy_dump
from tfds_danbooru.danbooru.make_dummy_dump import (
    MALFORMED_LINE,
    image_post,
    standard_posts,
    write_dump,
)

ROOT = Path(__file__).resolve().parents[2]
#: Every faulty case of `standard_posts` and how it is counted (Danbooru2021).
EXPECTED_2021 = {"seen": 17, "fetched": 9, "kept": 8, "duplicates/md5": 1,
                 "skipped/corrupt": 1, "skipped/deleted": 1, "skipped/file_type": 1,
                 "skipped/malformed": 1, "skipped/missing_file": 1, "skipped/no_file": 1,
                 "skipped/rating": 1, "skipped/too_small": 1}


def make_dump(tmp_path: Path, fmt: str, name: str = "dump", **layout) -> Path:
    extra = [] if layout.get("metadata") in ("array", "parquet") else [MALFORMED_LINE]
    return write_dump(tmp_path / name, fmt, standard_posts(fmt), extra_lines=extra, **layout)


def build(dump_dir: Path, data_dir: Path, beam_options=None, test_fraction: float = 0.3,
          **filters):
    """Packs the dump at 64 px through `build-dataset`'s `pack`; returns the builder."""
    spec = dump.make_spec(dump_dir, "auto", min_resolution=64, **filters)
    manual = data_dir / "manual"
    manual.mkdir(parents=True)
    (manual / dump.SPEC_NAME).write_text(spec.to_json())
    return pack(data_dir, manual, 64, "center", test_fraction, False, "png", beam_options)


def examples(builder) -> dict[str, dict[int, tuple]]:
    """{split: {id: (image bytes, tags, rating, md5, source)}}."""
    found = {}
    for split in builder.info.splits:
        found[split] = {
            int(e["id"]): (e["image"].tobytes(), tuple(t.decode() for t in e["tags"]),
                           e["rating"].decode(), e["md5"].decode(), e["source"].decode())
            for e in tfds.as_numpy(builder.as_dataset(split=split))
        }
    return found


def report(builder) -> dict[str, int]:
    return dict(dump.read_reports(builder.report_path(s) for s in ("train", "test")))


class _Id:
    def __init__(self, post_id):
        self.id = post_id


def test_both_layouts_in_one_process_keep_and_count_every_case(tmp_path):
    posts = {p.id: p for p in standard_posts("danbooru2021")}
    layouts = [("danbooru2021", {}), ("danbooru2021", {"images": "512px"}),
               ("danbooru2023", {}), ("danbooru2023", {"metadata": "array"}),
               ("danbooru2023", {"metadata": "parquet"})]
    for i, (fmt, layout) in enumerate(layouts):
        dump_dir = make_dump(tmp_path, fmt, f"dump{i}", **layout)
        assert dump.detect_format(dump_dir) == fmt
        builder = build(dump_dir, tmp_path / f"data{i}")
        found = examples(builder)
        kept = {**found["train"], **found.get("test", {})}
        assert sorted(kept) == list(range(1, 9)), (fmt, layout)
        expected = dict(EXPECTED_2021)
        if fmt == "danbooru2023":
            # 2023's "s" is sensitive, left out by default; 2021's "s" was safe, kept as "g".
            expected.update({"seen": 18, "skipped/rating": 2})
        if layout.get("metadata") in ("array", "parquet"):
            expected["seen"] -= 1
            del expected["skipped/malformed"]
        assert report(builder) == expected, (fmt, layout)
        assert {v[2] for v in kept.values()} == {"g"}
        assert {v[4] for v in kept.values()} == {fmt}
        # Splits as the builder assigns them to a manifest's rows, the fallback included.
        train, test = dbb.assign_splits([_Id(i) for i in kept], 0.3)
        assert set(found["train"]) == {r.id for r in train}
        assert set(found.get("test", {})) == {r.id for r in test} != set()
        # The packed image is the decoded file resized and cropped, and the tags are kept.
        image = np.frombuffer(kept[2][0], np.uint8).reshape(64, 64, 3)
        expected_image = dbb.resize_and_crop(decode_image(posts[2].data), 64)
        np.testing.assert_array_equal(image, expected_image)
        assert kept[2][1] == posts[2].tags and kept[2][3] == posts[2].record()["md5"]

    # Tags are "all of"; --max-images keeps the lowest ids of the posts that pass.
    builder = build(tmp_path / "dump0", tmp_path / "filtered", tags=("character_8", "cel_style"),
                    max_images=2)
    found = examples(builder)
    assert sorted({**found["train"], **found.get("test", {})}) == [4, 5]
    counts = report(builder)
    # Posts 1-3, 6, 7 and the tag-less or other-tag ones (102-104) lack a tag.
    assert counts["skipped/tags"] == 8 and counts["skipped/max_images"] == 1
    assert counts["kept"] == 2

    # JPEG storage: its own config, close to the PNG pixels.
    jpeg = pack(tmp_path / "data0", tmp_path / "data0" / "manual", 64, "center", 0.3, False,
                "jpeg")
    assert jpeg.builder_config.name == "64-test30-jpeg"
    png = examples(build(tmp_path / "dump0", tmp_path / "png"))
    for split, found in examples(jpeg).items():
        for post_id, value in found.items():
            pixels = [np.frombuffer(v[0], np.uint8).astype(int)
                      for v in (value, png[split][post_id])]
            assert 0 < np.abs(pixels[0] - pixels[1]).mean() < 6

    # The local runner's budget warning counts the metadata records, up to a limit.
    spec = dump.make_spec(tmp_path / "dump0")
    assert dump.count_posts(spec, 1000) == 17 and dump.count_posts(spec, 5) == 5


def test_links_out_of_the_dump_are_not_followed(tmp_path):
    dump_dir = make_dump(tmp_path, "danbooru2021")
    elsewhere = write_dump(tmp_path / "elsewhere", "danbooru2021",
                           [image_post(i, 90, 90, "s") for i in (31, 32, 33)])
    original = dump_dir / "original"
    # A file linked out, a folder linked out, and a link to a file of the system.
    (original / "0031").mkdir()
    (original / "0031" / "31.png").symlink_to(elsewhere / "original" / "0031" / "31.png")
    (original / "0032").symlink_to(elsewhere / "original" / "0032")
    (original / "0033").mkdir()
    (original / "0033" / "33.png").symlink_to("/etc/hostname")
    # And a link that stays inside the dump, which is read.
    (dump_dir / "extra").mkdir()
    (dump_dir / "extra" / "34.png").write_bytes(image_post(34, 90, 90, "s").data)
    (original / "0034").mkdir()
    (original / "0034" / "34.png").symlink_to(dump_dir / "extra" / "34.png")
    with open(dump_dir / "metadata" / "posts000000000000.json", "a") as f:
        for post_id in (31, 32, 33, 34):
            f.write(json.dumps(image_post(post_id, 90, 90, "s").record()) + "\n")
    spec = dump.make_spec(dump_dir, min_resolution=64)
    assert all(not dump.outside(c, dump_dir) for c in dump.containers(spec))
    assert str(original / "0032") not in dump.containers(spec)
    found = examples(build(dump_dir, tmp_path / "data"))
    kept = {**found["train"], **found.get("test", {})}
    assert 34 in kept and not {31, 32, 33} & set(kept)
    counts = report(build(dump_dir, tmp_path / "data2"))
    assert counts["skipped/missing_file"] == EXPECTED_2021["skipped/missing_file"] + 3


def test_a_2021_layout_rated_with_todays_letters_keeps_only_general(tmp_path):
    posts = [image_post(i, 90, 90, rating) for i, rating in enumerate("ggggsssqe", start=1)]
    dump_dir = write_dump(tmp_path / "dump", "danbooru2021", posts)
    spec = dump.make_spec(dump_dir, min_resolution=64)
    assert spec.format == "danbooru2021" and spec.rating_scheme == "danbooru2023"
    found = examples(build(dump_dir, tmp_path / "data"))
    assert sorted({**found["train"], **found.get("test", {})}) == [1, 2, 3, 4]
    # The 2021 dump itself (s, q, e: no g) is read with its own letters: s was safe.
    assert dump.make_spec(make_dump(tmp_path, "danbooru2021", "old")).rating_scheme == (
        "danbooru2021")


def test_a_truncated_tar_keeps_the_files_before_the_break(tmp_path):
    dump_dir = make_dump(tmp_path, "danbooru2023", shards=1)
    shard = dump_dir / "original" / "data-0000.tar"
    members = dump.list_members(str(shard))
    cut = members[len(members) // 2][1][1][1]  # the data offset of a middle member
    shard.write_bytes(shard.read_bytes()[:cut + 10])
    listed = dump.list_members(str(shard))
    assert 0 < len(listed) <= len(members) // 2 + 1
    assert [m[0] for m in listed] == [m[0] for m in members[:len(listed)]]


def test_a_parquet_file_that_is_not_one_is_a_one_line_error(tmp_path):
    dump_dir = make_dump(tmp_path, "danbooru2023", metadata="parquet")
    (dump_dir / "metadata" / "posts.parquet").write_bytes(b"not parquet at all" * 10)
    with pytest.raises(UserError, match="posts.parquet: not a readable Parquet file"):
        list(dump.read_posts(dump.make_spec(dump_dir)))


def test_a_build_refused_while_another_packs_leaves_the_spec_alone(tmp_path):
    from manga_pix2pix.dataset_build import manual_dir_of
    from tfds_danbooru.scrape.cache import lock_manual_dir

    data_dir = tmp_path / "data"
    manual = manual_dir_of(data_dir)
    manual.mkdir(parents=True)
    spec = dump.make_spec(make_dump(tmp_path, "danbooru2023"), min_resolution=64)
    (manual / dump.SPEC_NAME).write_text(spec.to_json())
    other = make_dump(tmp_path, "danbooru2021", "other")
    held = lock_manual_dir(manual)  # another build, packing
    try:
        result = CliRunner().invoke(main, [
            "build-dataset", "--source", "dump", "--dump-dir", str(other), "--data-dir",
            str(data_dir), "--image-size", "64", "--rating", "e", "--quiet"])
    finally:
        held.close()
    assert result.exit_code == 1 and "another build is writing to it" in result.output
    assert (manual / dump.SPEC_NAME).read_text() == spec.to_json()


@pytest.mark.slow
def test_beam_with_two_workers_gives_exactly_the_plain_examples(tmp_path):
    from tfds_danbooru.dump_beam import pipeline_options

    # More posts, in more folders: a few containers per worker.
    more = [image_post(i, 70 + i % 30, 90, "s") for i in range(2001, 2013)]
    dump_dir = write_dump(tmp_path / "dump", "danbooru2021", standard_posts("danbooru2021") + more,
                          extra_lines=[MALFORMED_LINE])
    # Lines that must cost one post each, not the run: not UTF-8, nested too deep for the
    # JSON decoder; and blank lines, which are no post at all.
    with open(dump_dir / "metadata" / "posts000000000000.json", "ab") as f:
        f.write(b'{"id": 3000, "md5": "\xff"}\n\n   \n' + b"[" * 100_000 + b"\n")
    plain = build(dump_dir, tmp_path / "plain")
    options = pipeline_options("local", 2)
    assert options.get_all_options()["direct_num_workers"] == 2
    assert options.get_all_options()["direct_running_mode"] == "multi_processing"
    beam = build(dump_dir, tmp_path / "beam", beam_options=options)
    plain_examples, beam_examples = examples(plain), examples(beam)
    assert set(beam_examples) == set(plain_examples) == {"train", "test"}
    for split in plain_examples:
        assert sorted(beam_examples[split]) == sorted(plain_examples[split])
        assert beam_examples[split] == plain_examples[split]
    assert sum(len(v) for v in beam_examples.values()) == 8 + 12
    expected = dict(EXPECTED_2021, seen=31, fetched=21, kept=20)
    expected["skipped/malformed"] += 2
    assert report(beam) == report(plain) == expected


@pytest.mark.slow
def test_cli_end_to_end_on_a_tar_dump_then_tfds_load(tmp_path, monkeypatch):
    help_text = CliRunner().invoke(main, ["build-dataset", "--help"]).output
    for option in ("--dump-dir", "--dump-format", "--runner", "--num-workers", "--beam-option",
                   "--encoding", "dump"):
        assert option in help_text

    dump_dir = make_dump(tmp_path, "danbooru2023")
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(main, [
        "build-dataset", "--source", "dump", "--dump-dir", str(dump_dir), "--image-size", "64",
        "--test-fraction", "0.3", "--num-workers", "2", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "on the local runner with 2 workers" in result.output
    assert "shuffles in memory" not in result.output  # 18 posts: far below the budget
    assert "posts seen: 18; fetched: 9; kept: 8 new" in result.output
    assert ("skipped: corrupt 1, deleted 1, file_type 1, malformed 1, missing_file 1, "
            "no_file 1, rating 2, too_small 1") in result.output
    assert "duplicates: 1 (by md5 1)" in result.output
    assert (data_dir / "complexity-64-test30.png").is_file()

    loaded = {}
    for split in ("train", "test"):
        for e in tfds.as_numpy(tfds.load("danbooru/64-test30", data_dir=str(data_dir),
                                         split=split)):
            loaded[int(e["id"])] = (split, e["image"].tobytes(), e["rating"].decode())
    plain = examples(build(dump_dir, tmp_path / "plain"))
    assert loaded == {i: (split, v[0], v[2]) for split, vs in plain.items()
                      for i, v in vs.items()}

    # A dump of which no post passes is a one-line error too, after the pipeline ran; with
    # the local runner's budget lowered below the dump's 18 posts, it is warned about first.
    monkeypatch.setattr(dump, "LOCAL_IMAGE_BUDGET", 10)
    empty = CliRunner().invoke(main, [
        "build-dataset", "--source", "dump", "--dump-dir", str(dump_dir), "--image-size", "64",
        "--tags", "no_such_tag", "--num-workers", "1", "--data-dir", str(tmp_path / "empty")])
    assert empty.exit_code == 1, empty.output
    assert "Error: no image of the dump is left for the " in empty.output
    assert ("warning: the local runner holds its shuffles in memory; budget about 10 images "
            "per machine") in empty.output
    assert "Traceback" not in empty.output

    # The same data dir cannot take scraped posts, and bad input is one line.
    again = CliRunner().invoke(main, ["build-dataset", "--source", "synthetic",
                                      "--data-dir", str(data_dir)])
    assert again.exit_code == 1 and "set up for a dump" in again.output
    for args, message in [
        ([], "--source dump needs --dump-dir"),
        (["--dump-dir", str(tmp_path)], "not a Danbooru dump"),
        (["--dump-dir", str(dump_dir), "--dump-format", "danbooru2021"], "no metadata"),
        (["--dump-dir", str(dump_dir), "--runner", "dataflow"],
         "needs --beam-option project=..., --beam-option region=..."),
        (["--dump-dir", str(dump_dir), "--beam-option", "oops"], "expected KEY=VALUE"),
    ]:
        bad = CliRunner().invoke(main, ["build-dataset", "--source", "dump",
                                        "--data-dir", str(tmp_path / "bad"), *args])
        assert bad.exit_code == 1 and message in bad.output, (args, bad.output)
        assert "Traceback" not in bad.output


def test_cluster_runner_options_are_built_without_running(tmp_path):
    from apache_beam.options.pipeline_options import (
        FlinkRunnerOptions,
        GoogleCloudOptions,
        SparkRunnerOptions,
        StandardOptions,
        WorkerOptions,
    )
    from apache_beam.runners.runner import create_runner

    from manga_pix2pix.errors import UserError
    from tfds_danbooru.dump_beam import pipeline_options

    dataflow = pipeline_options("dataflow", 50, [
        "project=my-project", "region=europe-west4", "temp_location=gs://bucket/tmp",
        "machine_type=n2-standard-4", "extra_package=dist/manga_pix2pix-0.1.0.whl"])
    assert dataflow.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = dataflow.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == (
        "my-project", "europe-west4", "gs://bucket/tmp")
    workers = dataflow.view_as(WorkerOptions)
    assert workers.num_workers == 50 and workers.machine_type == "n2-standard-4"

    flink = pipeline_options("flink", 16, ["flink_master=flink.example.org:8081"])
    assert flink.view_as(StandardOptions).runner == "FlinkRunner"
    assert flink.view_as(FlinkRunnerOptions).flink_master == "flink.example.org:8081"
    assert flink.view_as(FlinkRunnerOptions).parallelism == 16

    spark = pipeline_options("spark", None, ["spark_master_url=spark://spark.example.org:7077",
                                             "environment_type=LOOPBACK"])
    assert spark.view_as(StandardOptions).runner == "SparkRunner"
    assert spark.view_as(SparkRunnerOptions).spark_master_url == "spark://spark.example.org:7077"
    # The runners exist in this Beam (nothing is started or downloaded by naming them).
    for name in ("FlinkRunner", "SparkRunner", "DirectRunner"):
        assert type(create_runner(name)).__name__.endswith(name)

    # A URL data dir is for workers on a cluster; the scraping sources write locally.
    url = CliRunner().invoke(main, ["build-dataset", "--source", "synthetic",
                                    "--data-dir", "gs://bucket/data"])
    assert url.exit_code == 1 and "a URL is for --source dump" in url.output

    local = pipeline_options("local")
    assert local.get_all_options()["direct_num_workers"] == os.cpu_count()
    for runner, options, message in [("spark", [], "spark_master_url"),
                                     ("flink", [], "flink_master"),
                                     ("dataflow", ["project=p"], "temp_location"),
                                     ("prism", [], "--runner")]:
        with pytest.raises(UserError, match=message):
            pipeline_options(runner, None, options)


def test_a_missing_beam_extra_is_a_one_line_error(tmp_path):
    dump_dir = make_dump(tmp_path, "danbooru2021")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class NoBeam:
            def find_spec(self, name, path=None, target=None):
                if name == "apache_beam" or name.startswith("apache_beam."):
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, NoBeam())
    """))
    env = dict(os.environ, PYTHONPATH=f"{blocker}{os.pathsep}{ROOT}")
    result = subprocess.run(
        [sys.executable, "-m", "manga_pix2pix.cli", "build-dataset", "--source", "dump",
         "--dump-dir", str(dump_dir), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: packing a dump needs Apache Beam: pip install 'manga-pix2pix[beam]'")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", [make_dummy_dump, make_dummy_data])
def test_the_dummy_scripts_answer_help_and_bad_arguments_without_writing(
    module, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        module.main(["out", "extra", "arguments"])
    assert stop.value.code == 2 and "error:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither took an option for a folder
    module.main(["out"])
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())
