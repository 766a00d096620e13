"""`lst-train` command line (also `python -m lst_train`): every argument parser and command lives in this package
(info/train/export here; data, tokenizer, eval, convert, generate, sweep and demo in their own modules); the library
functions they call take typed arguments."""

import argparse
import logging
import os
import sys

from lst_train.cli.convert import convert_main
from lst_train.cli.data import (add_data_build_demo_eval_parser, add_data_build_demo_parser, add_data_inspect_parser,
                                add_data_pack_parsers)
from lst_train.cli.demo import add_demo_parser
from lst_train.cli.fit_entropy import add_data_fit_entropy_parser
from lst_train.cli.evaluation import add_eval_parser
from lst_train.cli.generate import add_generate_parser
from lst_train.cli.sweep import add_sweep_parser
from lst_train.cli.tokenizer import add_tokenizer_parser
from lst_train.config import ConfigError, load_config
from lst_train.data.skips import NoUsableData
from lst_train.flops import param_counts, row_flops


def _info(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    model = cfg.model
    units = args.units
    tokens = units if model.arch == "baseline" else round(units * args.tokens_per_patch)
    counts = param_counts(model)
    flops = row_flops(model, tokens, units)
    print(f"arch={model.arch}  row: {tokens} tokens, {units} global units")
    print(f"{'stack':<20}{'params':>16}{'fwd GFLOP/row':>16}")
    stack_flops = {name: f.total for name, f in flops.stacks.items()} | {"total": flops.forward.total}
    for name, n in counts.items():
        gflops = f"{stack_flops[name] / 1e9:,.3f}" if name in stack_flops else "-"
        print(f"{name:<20}{n:>16,}{gflops:>16}")
    print(f"training FLOPs per row (fwd+bwd): {flops.training:.4e}")


def _train(args: argparse.Namespace) -> None:
    from lst_train.trainer.checkpointing import CheckpointLoadFailed, CheckpointSaveFailed
    from lst_train.trainer.train import CollectiveFailure, NonFiniteSteps, train

    try:
        if args.check:
            from lst_train.trainer.startup_check import check_startup

            check_startup(load_config(args.config, args.overrides))
            print(f"lst-train: {args.config}: the config and every path it names are fine")
            return
        train(load_config(args.config, args.overrides))
    except (NonFiniteSteps, CollectiveFailure, CheckpointSaveFailed, CheckpointLoadFailed) as err:
        logging.getLogger("lst_train.train").error("%s", err)
        logging.shutdown()
        os._exit(3)
    # Skip interpreter teardown: with gloo, a few percent of processes abort there ("terminate called without an
    # active exception") after all work is done (~8% of exits on 2 CPU cores, torch 2.13, 2026-11), which torchrun
    # reports as a failed rank.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _export(args: argparse.Namespace) -> None:
    from lst_train.export import export_run

    print(f"exported to {export_run(args.run_dir, args.out, args.step)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lst-train", description="Latent Speech-Text Transformer pretraining")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="parameters per stack and FLOPs per packed row of a recipe")
    info.add_argument("config", help="YAML recipe, e.g. recipes/lst_1b.yaml")
    info.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.encoder.dim=512")
    info.add_argument("--units", type=int, default=4096, help="global positions per row (default 4096)")
    info.add_argument("--tokens-per-patch", type=float, default=2.0,
                      help="LST only: mean tokens per patch, to turn units into tokens (default 2.0)")
    info.set_defaults(run=_info)
    train = commands.add_parser("train", help="train (one process, or every rank under torchrun)")
    train.add_argument("config", help="YAML recipe, e.g. recipes/debug_cpu.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.steps=100 run_dir=runs/x")
    train.add_argument("--check", action="store_true",
                       help="only check the config and every path it names (data, tokenizer, codec weights, "
                            "evaluation files) and whether the run stopped on divergence, then exit: the launch "
                            "scripts run it once before torchrun")
    train.set_defaults(run=_train)
    export = commands.add_parser("export", help="consolidate a run's latest checkpoint into model.safetensors")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True, help="output directory")
    export.add_argument("--step", type=int, help="checkpoint step (default: the latest complete one)")
    export.set_defaults(run=_export)
    add_tokenizer_parser(commands)
    add_eval_parser(commands)
    add_sweep_parser(commands)
    add_generate_parser(commands)
    add_demo_parser(commands)
    data = commands.add_parser("data", help="build, inspect and benchmark training data").add_subparsers(
        dest="data_command", required=True)
    add_data_build_demo_parser(data)
    add_data_inspect_parser(data)
    add_data_pack_parsers(data)
    add_data_build_demo_eval_parser(data)
    add_data_fit_entropy_parser(data)
    return parser


def data_error_line(err: NoUsableData) -> str:
    """The error's own line: raised in a loader worker, torch wraps it in the worker's traceback, whose last line
    is `module.NoUsableData: MESSAGE`."""
    line = str(err).strip().splitlines()[-1]
    return line.removeprefix(f"{type(err).__module__}.{type(err).__name__}: ")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:2] == ["eval", "convert"]:  # its own parser: `eval`'s first positional is a model path
        return convert_main(argv[2:])
    parser = build_parser()
    # key=value overrides may follow options too (argparse stops filling a positional list at the first option).
    args, extra = parser.parse_known_args(argv)
    # An option is never an override: `--tokens_per_patch=3` is a misspelt option, not a config key.
    if extra and (not hasattr(args, "overrides") or any("=" not in item or item.startswith("-") for item in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        args.run(args)
    except ConfigError as err:
        print(f"lst-train: config error: {err}", file=sys.stderr)
        return 2
    except NoUsableData as err:
        print(f"lst-train: data error: {data_error_line(err)}", file=sys.stderr)
        return 1
    return 0
