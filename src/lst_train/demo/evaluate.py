"""Scores every family's final model on the demo evaluation set in S→S, T→T, S→T, T→S, in this process.

The families share the codec and vocabulary, so each audio file goes through Mimi once for all of them.
"""

from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import SETTINGS, PromptBuilder, evaluation_patcher
from lst_train.export import load_for_eval
from lst_train.evaluation.scoring import evaluate


def evaluate_runs(run_dirs: dict[str, str], items_path: str, batch_size: int = 16, out=print) -> dict:
    """family -> {setting: {items, correct_sum, correct_mean, accuracy_sum, accuracy_mean}, 'skipped': {...}}."""
    skips = SkipCounter()
    items = read_items(items_path, skips)
    speech_cache: dict = {}
    tokenizer = None
    results = {}
    for family, run_dir in run_dirs.items():
        model, cfg = load_for_eval(run_dir)
        tokenizer = tokenizer or SpeechTextTokenizer.from_config(cfg.data, model.vocab)  # one Mimi for all
        builder = PromptBuilder(tokenizer, evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps),
                                speech_cache)
        family_skips = SkipCounter(skips.as_dict())
        results[family] = evaluate(model, builder, items, list(SETTINGS), family_skips, batch_size, progress=True,
                                   pad_to_multiple=cfg.data.pad_to_multiple)
        results[family]["skipped"] = family_skips.as_dict()
        line = ", ".join(f"{s} {results[family][s]['accuracy_mean']:.3f}" for s in SETTINGS)
        out(f"{family}: accuracy (per-token mean) {line} on {results[family]['s2s']['items']} items")
    return results
