"""`lst-train eval RUN_DIR_OR_EXPORT [--data FILE.jsonl] [--validation GLOB ...] [--asr GLOB] [--out results.json]`:
story completion accuracy per setting, the held-out loss per text token, speech token and second of speech, and the
word error rate of the model's own greedy transcripts."""

import argparse
import json
import os

import torch
import torch.distributed as dist

from lst_train.config import SourceConfig, SourceKind
from lst_train.config.data import SPEECH_SEQUENCES
from lst_train.data.heldout import heldout_documents
from lst_train.data.skips import SkipCounter, merge_skip_counts
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.heldout import combine_heldout, heldout_loss
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import SETTINGS, PromptBuilder, evaluation_patcher
from lst_train.evaluation.scoring import evaluate, with_accuracy
from lst_train.export import load_for_eval
from lst_train.generation.transcription import COUNTS, error_rates, transcription_eval


def heldout_sources(globs: list[str], speech_sequence: str) -> list[SourceConfig]:
    """One source per glob: .tar shards are speech (read as `speech_sequence` documents), .jsonl[.zst] text."""
    sources = []
    for pattern in globs:
        if pattern.endswith(".tar"):
            sources.append(SourceConfig(kind=SourceKind.speech, path=pattern, sequence=speech_sequence))
        elif pattern.endswith((".jsonl", ".jsonl.zst")):
            sources.append(SourceConfig(kind=SourceKind.text, path=pattern))
        else:
            raise SystemExit(f"lst-train eval: --validation {pattern!r}: end the glob in .tar (speech) or .jsonl / "
                             ".jsonl.zst (text)")
    return sources


def eval_device(name: str, local_rank: str | None) -> torch.device:
    """The device to score on: under torchrun, plain 'cuda' means this process's own GPU (LOCAL_RANK), not GPU 0."""
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and local_rank is not None:
        return torch.device("cuda", int(local_rank))
    return device


def _print_heldout(result: dict, sources: list[SourceConfig]) -> None:
    def fmt(value):
        return "-" if value is None else f"{value:.4f}"

    print("held-out loss (nats)      documents  per text token  per speech token  per speech second")
    for name, summary in [(f"{s.kind}/{s.sequence_kind} {s.path}", r) for s, r in zip(sources, result["sources"])] \
            + [("all", result["total"])]:
        print(f"  {name}\n  {'':24}{summary['documents']:>9}  {fmt(summary['nats_per_text_token']):>14}  "
              f"{fmt(summary['nats_per_speech_token']):>16}  {fmt(summary['nats_per_speech_second']):>17}")


def default_settings(items: list) -> list[str]:
    """All four settings; S→S and T→T only when no item has a context (a pair set: nothing to cross from)."""
    return ["s2s", "t2t"] if items and all(item.context is None for item in items) else list(SETTINGS)


def _run(args: argparse.Namespace) -> None:
    if not args.data and not args.validation and not args.asr:
        raise SystemExit("lst-train eval: give --data ITEMS.jsonl (story completion), --validation GLOB (held-out "
                         "loss), --asr GLOB (word error rate), or several")
    if args.asr and not args.asr.endswith(".tar"):
        raise SystemExit(f"lst-train eval: --asr {args.asr!r}: end the glob in .tar (speech shards with transcripts)")
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    skips = SkipCounter()
    if args.data and not os.path.isfile(args.data):
        raise SystemExit(f"lst-train eval: --data {args.data}: no such file (items jsonl, see docs/evaluation.md)")
    items = read_items(args.data, skips) if args.data else []
    settings = [] if not args.data else args.settings.split(",") if args.settings else default_settings(items)
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"lst-train eval: unknown settings {unknown}; choose from {sorted(SETTINGS)}")
    sources = heldout_sources(args.validation or [], args.speech_sequence)
    model, cfg = load_for_eval(args.model)
    model.to(eval_device(args.device, os.environ.get("LOCAL_RANK")))
    tokenizer = SpeechTextTokenizer.from_config(cfg.data, model.vocab)
    patcher = evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps)
    results = {}
    if args.data:  # under torchrun every rank scores its share of the items, and of the held-out documents
        items = items[rank::world_size]
        results = evaluate(model, PromptBuilder(tokenizer, patcher), items, settings, skips, args.batch_size,
                           progress=rank == 0, pad_to_multiple=cfg.data.pad_to_multiple)
    if sources:
        documents = heldout_documents(cfg.data, sources, tokenizer, args.documents, args.max_tokens, skips)
        results["heldout"] = heldout_loss(model, documents[rank::world_size], model.vocab, patcher, len(sources),
                                          args.batch_size, cfg.data.pad_to_multiple)
    if args.asr:
        asr_source = SourceConfig(kind=SourceKind.speech, path=args.asr, sequence="asr")
        documents = heldout_documents(cfg.data, [asr_source], tokenizer, args.documents, args.max_tokens, skips)
        results["asr"] = transcription_eval(model, [d.document for d in documents[rank::world_size]], tokenizer.text,
                                            cfg.patching, args.asr_max_tokens)
    results["skipped"] = skips.as_dict()
    if world_size > 1:
        results = _combine_ranks(results, settings)
        if rank != 0:
            return
    for setting in settings:
        r = results[setting]
        print(f"{setting}: {r['items']} items, accuracy (sum) {r['accuracy_sum']}, (mean) {r['accuracy_mean']}")
    if sources:
        _print_heldout(results["heldout"], sources)
    if args.asr:
        r = results["asr"]
        print(f"asr: {r['utterances']} utterances, WER {r['wer']}, CER {r['cer']}, {r['unfinished']} cut at "
              f"--asr-max-tokens")
        for example in r["examples"][:3]:
            print(f"  {example['key']}\n    reference:  {example['reference']}\n"
                  f"    transcript: {example['hypothesis']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    print(json.dumps(results))


def _combine_ranks(results: dict, settings: list[str]) -> dict:
    """Sum the per-rank counts (gloo: no GPU needed to gather a few numbers)."""
    dist.init_process_group("gloo")
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, results)
    dist.destroy_process_group()
    combined = {"skipped": merge_skip_counts(r["skipped"] for r in gathered)}
    for setting in settings:
        combined[setting] = with_accuracy({key: sum(r[setting][key] for r in gathered)
                                           for key in ("items", "correct_sum", "correct_mean")})
    if "heldout" in results:
        combined["heldout"] = combine_heldout([r["heldout"] for r in gathered])
    if "asr" in results:
        combined["asr"] = {**error_rates({key: sum(r["asr"][key] for r in gathered) for key in COUNTS}),
                           "examples": gathered[0]["asr"]["examples"]}
    return combined


def add_eval_parser(commands) -> None:
    parser = commands.add_parser("eval", help="multiple-choice story completion (S→S, T→T, S→T, T→S) and held-out "
                                "loss; `eval convert` converts published sets")
    parser.add_argument("model", help="a run directory (latest checkpoint) or an export directory")
    parser.add_argument("--data", help="items, jsonl (see lst_train.evaluation.items)")
    parser.add_argument("--validation", nargs="+", metavar="GLOB",
                        help="held-out shards (quote the globs): speech .tar, text .jsonl[.zst]; reports nats per "
                        "text token, speech token and second of speech on the same documents for every model")
    parser.add_argument("--speech-sequence", default="speech", choices=SPEECH_SEQUENCES,
                        help="documents made of the held-out speech shards (asr / tts: the loss of the answer given "
                        "the prompt, as fine-tuning trains it)")
    parser.add_argument("--asr", metavar="GLOB", help="speech shards with transcripts (quote the glob): the model "
                        "transcribes each utterance greedily (<s> speech <t> ...); reports WER and CER")
    parser.add_argument("--asr-max-tokens", type=int, default=128, help="longest transcript generated (tokens)")
    parser.add_argument("--documents", type=int, default=200, help="held-out documents per glob (at most)")
    parser.add_argument("--max-tokens", type=int, default=4096,
                        help="held-out documents longer than this are skipped and counted")
    parser.add_argument("--settings", help="comma-separated, from s2s,t2t,s2t,t2s (default: all four; s2s,t2t for "
                        "a pair set, whose items have no context)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(run=_run)
