"""`manga-pix2pix build-dataset` against the fake booru: a faulty site, kill -9, clear errors."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import tensorflow_datasets as tfds
from click.testing import CliRunner
from fake_booru import FakePost, png

from manga_pix2pix.cli import main

MAIN = "from manga_pix2pix.cli import main; main()"


def options(url, data_dir, *extra):
    return ["build-dataset", "--source", "danbooru", "--base-url", url, "--image-size", "64",
            "--min-resolution", "32", "--rate-limit", "1000", "--timeout", "0.5",
            "--retries", "3", "--page-size", "5", "--test-fraction", "0.2",
            "--data-dir", str(data_dir), *extra]


def load_examples(data_dir):
    ds = tfds.load("danbooru/64-test20", data_dir=str(data_dir), split="train+test")
    return [{k: v.numpy() for k, v in example.items()} for example in ds]


def assert_every_valid_image_exactly_once(server, data_dir):
    valid = {p.id: p for p in server.posts if p.valid}
    examples = load_examples(data_dir)
    assert sorted(int(e["id"]) for e in examples) == sorted(valid)
    for example in examples:
        post = valid[int(example["id"])]
        assert example["md5"].decode() == post.md5
        assert example["image"].shape == (64, 64, 3)
        assert [t.decode() for t in example["tags"]] == list(post.tags)
        assert example["rating"] == b"g" and example["source"] == b"danbooru"
    # Server side: each valid file went out in full exactly once, and nothing else did
    # except the files that had to be fetched to be found bad (truncated, corrupt, a bomb).
    for post in valid.values():
        assert server.completed[post.path] == 1, post.id
    fetched_bad = {path for path, n in server.completed.items() if n} - {
        p.path for p in valid.values()}
    assert fetched_bad == {"/data/114.png", "/data/113.png", "/data/100.png"}


def test_builds_every_valid_image_exactly_once_from_a_faulty_site(booru, tmp_path):
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(main, options(booru.url, data_dir))
    assert result.exit_code == 0, result.output
    assert_every_valid_image_exactly_once(booru, data_dir)
    out = result.output
    assert "kept: 10 new" in out and "10 images in the dataset" in out
    assert "duplicates: 1 (by md5 1)" in out
    assert "animated 1" in out and "corrupt 1" in out and "md5_mismatch 1" in out
    assert "no_file_url 1" in out and "file_type 1" in out and "too_small 1" in out
    histogram = data_dir / "complexity-64-test20.png"
    assert histogram.is_file() and "histogram: " + str(histogram) in out
    # Everything the build wrote is inside the data dir; the hostile name made no file.
    assert {p.name for p in tmp_path.iterdir()} == {"data"}
    assert not list(tmp_path.rglob("x.png"))
    images = {p.name for p in (data_dir / "downloads/manual/danbooru/images").iterdir()}
    assert images == {"120.png", "119.jpg", "118.png", "117.png", "116.png", "115.png",
                      "110.png", "104.webp", "102.png", "101.png"}


def test_killed_with_sigkill_then_rerun_downloads_nothing_twice(make_booru, tmp_path):
    server = make_booru(stall_after=4)
    data_dir = tmp_path / "data"
    manifest = data_dir / "downloads/manual/danbooru/manifest.sqlite"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-c", MAIN, *options(server.url, data_dir),
                             "--quiet"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not server.stalled and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert server.stalled == 1, proc.stdout.read() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    with sqlite3.connect(manifest) as conn:
        done = conn.execute("SELECT COUNT(*) FROM posts WHERE status = 'done'").fetchone()[0]
    assert done == 4 and server.images_completed() == 4
    assert not (data_dir / "danbooru").exists()  # killed before packing

    server.release()
    result = CliRunner().invoke(main, options(server.url, data_dir))
    assert result.exit_code == 0, result.output
    assert "4 already there" in result.output
    assert_every_valid_image_exactly_once(server, data_dir)


def test_refused_access_is_a_one_line_error_and_credentials_come_from_the_environment(
        make_booru, tmp_path):
    server = make_booru([FakePost(2, png(2), "/2.png"), FakePost(1, png(1), "/1.png")],
                        auth=("alice", "s3cret"))
    runner = CliRunner()
    result = runner.invoke(main, options(server.url, tmp_path / "a"),
                           env={"DANBOORU_LOGIN": "", "DANBOORU_API_KEY": ""})
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: 127.0.0.1:{} refused access (HTTP 401) (Invalid API key); check "
        "DANBOORU_LOGIN and DANBOORU_API_KEY".format(server.url.split(":")[2].rstrip("/")))
    assert "Traceback" not in result.output
    result = runner.invoke(main, options(server.url, tmp_path / "b", "--test-fraction", "0"),
                           env={"DANBOORU_LOGIN": "alice", "DANBOORU_API_KEY": "s3cret"})
    assert result.exit_code == 0, result.output
    assert "2 images in the dataset" in result.output


def test_unreachable_host_and_no_results(booru, closed_port_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, options(closed_port_url, tmp_path / "a", "--retries", "1"))
    assert result.exit_code == 1
    assert "Error: cannot reach 127.0.0.1" in result.output
    assert "connection refused (after 2 tries)" in result.output
    assert not (tmp_path / "a").exists(), "a failed first build leaves no folders"
    result = runner.invoke(main, options(booru.url, tmp_path / "b", "--tags", "no_such_tag"))
    assert result.exit_code == 1
    assert "Error: no posts match the search" in result.output
    assert not (tmp_path / "b").exists()
    (tmp_path / "kept").mkdir()
    result = runner.invoke(main, options(closed_port_url, tmp_path / "kept", "--retries", "0"))
    assert result.exit_code == 1
    assert (tmp_path / "kept").is_dir(), "a folder the user had is never removed"
    result = runner.invoke(main, options(booru.url, tmp_path / "c", "--tags", "a", "--tags", "b",
                                         "--tags", "c"), env={"DANBOORU_LOGIN": ""})
    assert result.exit_code == 1 and "allows 2 tags" in result.output
    assert "Traceback" not in result.output


def test_a_full_disk_is_a_one_line_error(tmp_path):
    data_dir = tmp_path / "small_disk"
    data_dir.mkdir()
    # A 160 KB tmpfs in a private mount namespace: the build runs out of space for real.
    command = ["unshare", "-rm", "sh", "-c",
               'mount -t tmpfs -o size=160k none "$0" && exec "$@"', str(data_dir),
               sys.executable, "-c", MAIN, "build-dataset", "--source", "synthetic",
               "--max-images", "50", "--data-dir", str(data_dir), "--quiet"]
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs none {data_dir}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (no user namespaces)")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: the disk is full")
    assert "Traceback" not in result.stderr
