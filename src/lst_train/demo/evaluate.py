"""Scores every family's final model, in this process: on the demo's stories in S→S, T→T, S→T, T→S, on its word
and syntax pairs in S→S and T→T, and the held-out loss on the corpus's valid/ and test/ splits (speech-only and
text documents: the same tokens for every family and seed).

Families that share the codec and vocabulary share the encoded audio: each file goes through the codec once for
all of them (families with other speech tokens, e.g. k-means units or one Mimi codebook, get their own).
"""

from lst_train.config import SourceConfig, SourceKind
from lst_train.data.heldout import heldout_documents
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.data.token_cache import codec_key
from lst_train.evaluation.heldout import heldout_loss
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import PromptBuilder, evaluation_patcher
from lst_train.export import load_for_eval
from lst_train.evaluation.scoring import evaluate


def _shared(shared: dict, cfg, vocab) -> tuple[SpeechTextTokenizer, dict]:
    """The tokenizer and the per-tokenization store (encoded audio, documents) of a family, shared with every family
    whose tokens depend on the same codec (and codebooks kept) and text BPE."""
    key = codec_key(cfg.data.codec, cfg.model.vocab.n_codebooks), cfg.data.tokenizer
    if key not in shared:
        shared[key] = (SpeechTextTokenizer.from_config(cfg.data, vocab), {})
    return shared[key]


def evaluate_runs(run_dirs: dict[str, str], item_sets: dict[str, tuple[str, tuple[str, ...]]], batch_size: int = 16,
                  out=print) -> dict:
    """set name -> run name -> {setting: {items, correct_sum, correct_mean, accuracy_sum, accuracy_mean},
    'skipped': {...}}, for `item_sets`: set name -> (items file, settings). Each model is loaded once for every set."""
    read_skips = {name: SkipCounter() for name in item_sets}
    items = {name: read_items(path, read_skips[name]) for name, (path, _) in item_sets.items()}
    shared: dict = {}
    results: dict = {name: {} for name in item_sets}
    for run, run_dir in run_dirs.items():
        model, cfg = load_for_eval(run_dir)
        tokenizer, speech_cache = _shared(shared, cfg, model.vocab)
        builder = PromptBuilder(tokenizer, evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps),
                                speech_cache)
        for name, (_, settings) in item_sets.items():
            run_skips = SkipCounter(read_skips[name].as_dict())
            result = evaluate(model, builder, items[name], list(settings), run_skips, batch_size, progress=True,
                              pad_to_multiple=cfg.data.pad_to_multiple)
            result["skipped"] = run_skips.as_dict()
            results[name][run] = result
            line = ", ".join(f"{s} {result[s]['accuracy_mean']:.3f}" for s in settings)
            out(f"{run}: {name}: accuracy (per-token mean) {line} on {result[settings[0]]['items']} items")
    return results


def split_sources(split_dir: str) -> list[SourceConfig]:
    """A held-out split of the demo corpus: its speech as speech-only documents, then its text."""
    return [SourceConfig(kind=SourceKind.speech, path=f"{split_dir}/speech/*.tar", sequence="speech"),
            SourceConfig(kind=SourceKind.text, path=f"{split_dir}/text/*.jsonl.zst")]


def heldout_runs(run_dirs: dict[str, str], splits: dict[str, str], max_documents: int = 400,
                 batch_size: int = 8, out=print) -> dict:
    """run name -> split name -> heldout_loss result ({"total", "sources": [speech, text]}) on every split dir."""
    shared, results = {}, {}
    for name, run_dir in run_dirs.items():
        model, cfg = load_for_eval(run_dir)
        tokenizer, documents = _shared(shared, cfg, model.vocab)  # documents: split -> held-out documents
        patcher = evaluation_patcher(cfg.model.arch, cfg.patching, cfg.training.steps)
        results[name] = {}
        for split, path in splits.items():
            if split not in documents:  # read (and encode) once: the documents do not depend on the model
                documents[split] = heldout_documents(cfg.data, split_sources(path), tokenizer, max_documents, 4096,
                                                     SkipCounter())
            results[name][split] = heldout_loss(model, documents[split], model.vocab, patcher, 2, batch_size,
                                                cfg.data.pad_to_multiple)
        test = results[name][list(splits)[-1]]
        out(f"{name}: held-out {list(splits)[-1]}: {test['sources'][0]['nats_per_speech_second']:.3f} nats per "
            f"second of speech, {test['sources'][1]['nats_per_text_token']:.4f} per text token")
    return results
