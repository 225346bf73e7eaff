"""The Beam pipeline that packs a Danbooru dump, and the options of the runners it runs on.

One `DumpExamples` transform per split runs the steps of `tfds_danbooru.dump` on workers:

    metadata files ──read, parse──▶ posts ──group by id──▶ one per id ──filters──▶
    ──group by md5──▶ lowest id ──(--max-images: the N lowest ids)──▶ split (with the
    one-test-image fallback, a global combine) ──join by id with the containers' listings──▶
    ──group by folder or tar shard──▶ each container opened once: decode, verify,
    resize/crop ──▶ (post id, example)

Every left-out post becomes an event ("skipped/<reason>", "duplicates/<kind>"); the events are
counted and written to the split's report file, read back by `build-dataset` for its summary.
Each split's transform reads all the metadata again (dedupe and the fallback are global);
only its own posts' files are read. Worker functions are module-level (Beam pickles with
cloudpickle).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from manga_pix2pix.errors import UserError
from tfds_danbooru import dump
from tfds_danbooru.scrape.posts import Post

RUNNERS = ("local", "dataflow", "flink", "spark")
RUNNER_CLASSES = {"local": "DirectRunner", "dataflow": "DataflowRunner",
                  "flink": "FlinkRunner", "spark": "SparkRunner"}
#: Options a cluster runner cannot do without.
REQUIRED_OPTIONS = {"dataflow": ("project", "region", "temp_location"),
                    "flink": ("flink_master",), "spark": ("spark_master_url",)}
_EVENT = "event"


def pipeline_options(runner: str, num_workers: int | None = None,
                     options: Sequence[str] = ()) -> PipelineOptions:
    """The Beam options of a run: the runner named, its workers, and `KEY=VALUE` options.

    `local` is Beam's DirectRunner with `num_workers` worker processes (default: the CPU
    count); the others get `num_workers` as their worker count where they have one
    (Dataflow `num_workers`, Flink `parallelism`) and every option passed through.

    Raises:
        UserError: an unknown runner, an option not of the form KEY=VALUE, or a cluster
            runner without its required options.
    """
    if runner not in RUNNERS:
        raise UserError(f"--runner: must be one of {', '.join(RUNNERS)}")
    args = [f"--runner={RUNNER_CLASSES[runner]}"]
    if runner == "local":
        args += [f"--direct_num_workers={num_workers or os.cpu_count() or 1}",
                 "--direct_running_mode=multi_processing",
                 # The workers' start-up notes would bury the summary.
                 "--default_sdk_harness_log_level=WARNING"]
    elif num_workers and runner == "dataflow":
        args.append(f"--num_workers={num_workers}")
    elif num_workers and runner == "flink":
        args.append(f"--parallelism={num_workers}")
    given = set()
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UserError(f"--beam-option: expected KEY=VALUE, got {option!r}")
        given.add(key)
        args.append(f"--{key}={value}")
    missing = [key for key in REQUIRED_OPTIONS.get(runner, ()) if key not in given]
    if missing:
        raise UserError(f"--runner {runner} needs " + ", ".join(
            f"--beam-option {key}=..." for key in missing))
    return PipelineOptions(args)


def _key_by_id(post: Post, split: str, test_fraction: float):
    if dump.split_of(post.id, test_fraction) == split:
        yield beam.pvalue.TaggedOutput(_EVENT, "seen")
        if post.id is None:
            yield beam.pvalue.TaggedOutput(_EVENT, f"skipped/{post.problem}")
    if post.id is not None:
        yield post.id, post


def _one_per_id(keyed, spec: dump.DumpSpec, split: str, test_fraction: float):
    post_id, posts = keyed
    post, dropped = dump.one_per_id(posts)
    mine = dump.split_of(post_id, test_fraction) == split
    for _ in range(dropped if mine else 0):
        yield beam.pvalue.TaggedOutput(_EVENT, "duplicates/id")
    reason = dump.post_reason(post, spec)
    if reason is None:
        yield post.md5 or f"id:{post.id}", post
    elif mine:
        yield beam.pvalue.TaggedOutput(_EVENT, f"skipped/{reason}")


def _one_per_md5(keyed, split: str, test_fraction: float):
    keeper, others = dump.one_per_md5(keyed[1])
    for other in others:
        if dump.split_of(other.id, test_fraction) == split:
            yield beam.pvalue.TaggedOutput(_EVENT, "duplicates/md5")
    yield keeper


def _post_id(post: Post) -> int:
    return post.id


def _highest(ids: list[int]) -> int | None:
    return max(ids) if ids else None


def _within_max(post: Post, cutoff: int | None, split: str, test_fraction: float):
    if cutoff is not None and post.id <= cutoff:
        yield post
    elif dump.split_of(post.id, test_fraction) == split:
        yield beam.pvalue.TaggedOutput(_EVENT, "skipped/max_images")


class _FallbackFn(beam.CombineFn):
    """`dump.SplitFallback` as a Beam combine."""

    def __init__(self, test_fraction: float):
        self.rule = dump.SplitFallback(test_fraction)

    def create_accumulator(self):
        return self.rule.create()

    def add_input(self, accumulator, element):
        return self.rule.add(accumulator, element)

    def merge_accumulators(self, accumulators):
        return self.rule.merge(accumulators)

    def extract_output(self, accumulator):
        return self.rule.result(accumulator)


def _in_split(post: Post, moved: int | None, split: str, test_fraction: float):
    if dump.split_with_fallback(post.id, test_fraction, moved) == split:
        yield post.id, post


def _locate(joined):
    _, groups = joined
    posts, files = list(groups["post"]), list(groups["file"])
    if not posts:
        return
    if not files:
        yield beam.pvalue.TaggedOutput(_EVENT, "skipped/missing_file")
        return
    container, member = min(files)
    yield container, (posts[0], member)


def _process(grouped, spec: dump.DumpSpec, make_example: Callable):
    container, items = grouped
    for kind, value in dump.process_container(container, items, spec, make_example):
        if kind == "event":
            yield beam.pvalue.TaggedOutput(_EVENT, value)
        else:
            yield beam.pvalue.TaggedOutput(_EVENT, "kept")
            yield value


class DumpExamples(beam.PTransform):
    """The (post id, example) of one split of a dump; writes the split's report file.

    Args:
        spec: the dump and its filters.
        split: "train" or "test".
        test_fraction: the share of post ids in test.
        make_example: (post, decoded uint8 RGB image) -> example dict; module-level (or a
            `functools.partial` of one), since it is pickled to the workers.
        report_path: the split's report file.
    """

    def __init__(self, spec: dump.DumpSpec, split: str, test_fraction: float,
                 make_example: Callable, report_path: str):
        super().__init__()
        self.spec = spec
        self.split = split
        self.test_fraction = test_fraction
        self.make_example = make_example
        self.report_path = report_path

    def expand(self, pbegin):
        spec, split, fraction = self.spec, self.split, self.test_fraction
        records = []
        for i, path in enumerate(dump.metadata_files(spec)):
            if path.endswith(".parquet"):
                records.append(pbegin | f"ReadParquet{i}" >> beam.io.ReadFromParquet(path))
            elif dump.is_json_array(path):
                records.append(pbegin | f"ListArray{i}" >> beam.Create([path])
                               | f"ReadArray{i}" >> beam.FlatMap(dump.read_records))
            else:
                # Bytes: a line that is not UTF-8 is a malformed post, not a failed run.
                records.append(pbegin | f"ReadLines{i}" >> beam.io.ReadFromText(
                                   path, coder=beam.coders.BytesCoder())
                               | f"DropBlank{i}" >> beam.Filter(dump.holds_text)
                               | f"ParseLines{i}" >> beam.Map(dump.parse_json_line))
        posts = (records | "Metadata" >> beam.Flatten()
                 | "Parse" >> beam.Map(dump.parse_record, spec.rating_scheme))
        events = []

        keyed = posts | "KeyById" >> beam.FlatMap(_key_by_id, split, fraction).with_outputs(
            _EVENT, main="out")
        events.append(keyed[_EVENT])
        unique = (keyed.out | "GroupById" >> beam.GroupByKey()
                  | "OnePerId" >> beam.FlatMap(_one_per_id, spec, split, fraction).with_outputs(
                      _EVENT, main="out"))
        events.append(unique[_EVENT])
        kept = (unique.out | "GroupByMd5" >> beam.GroupByKey()
                | "OnePerMd5" >> beam.FlatMap(_one_per_md5, split, fraction).with_outputs(
                    _EVENT, main="out"))
        events.append(kept[_EVENT])
        kept = kept.out
        if spec.max_images is not None:
            cutoff = (kept | "Ids" >> beam.Map(_post_id)
                      | "LowestIds" >> beam.combiners.Top.Smallest(spec.max_images)
                      | "Cutoff" >> beam.Map(_highest))
            within = kept | "WithinMax" >> beam.FlatMap(
                _within_max, beam.pvalue.AsSingleton(cutoff), split, fraction).with_outputs(
                    _EVENT, main="out")
            events.append(within[_EVENT])
            kept = within.out
        moved = (kept | "KeptIds" >> beam.Map(_post_id)
                 | "TestFallback" >> beam.CombineGlobally(_FallbackFn(fraction)))
        mine = kept | "InSplit" >> beam.FlatMap(
            _in_split, beam.pvalue.AsSingleton(moved), split, fraction)

        files = (pbegin | "Containers" >> beam.Create(dump.containers(spec))
                 | "SpreadContainers" >> beam.Reshuffle()
                 | "ListMembers" >> beam.FlatMap(dump.list_members))
        located = ({"post": mine, "file": files} | "JoinFiles" >> beam.CoGroupByKey()
                   | "Locate" >> beam.FlatMap(_locate).with_outputs(_EVENT, main="out"))
        events.append(located[_EVENT])
        examples = (located.out | "GroupByContainer" >> beam.GroupByKey()
                    | "Decode" >> beam.FlatMap(_process, spec, self.make_example).with_outputs(
                        _EVENT, main="out"))
        events.append(examples[_EVENT])

        _ = (events | "Events" >> beam.Flatten()
             | "CountEvents" >> beam.combiners.Count.PerElement()
             | "Report" >> beam.combiners.ToDict()
             | "WriteReport" >> beam.Map(dump.write_report, self.report_path))
        return examples.out
