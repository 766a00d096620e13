"""Evaluation inside the training loop: multiple-choice sets and the validation loss per modality.

Every rank runs the same forward passes (FSDP needs all ranks in each one): each rank scores every item and reads
its own share of the validation data. Results are identical on every rank; rank 0 logs them.
"""

import itertools
import os

import torch
from torch import nn

from lst_train.config import ConfigError, EvaluationConfig
from lst_train.data.dataset import build_dataloader, resolve_shards
from lst_train.data.loader_spec import LoaderSpec
from lst_train.data.skips import SkipCounter
from lst_train.data.speech_text import SpeechTextTokenizer
from lst_train.evaluation.items import read_items
from lst_train.evaluation.prompts import PromptBuilder, evaluation_patcher
from lst_train.evaluation.scoring import evaluate
from lst_train.loss import loss_sums, targets_of


def check_evaluation_paths(evaluation: EvaluationConfig, loader: LoaderSpec) -> None:
    """At start-up: a missing set or a validation glob matching nothing must not wait for the first evaluation (for
    sweeps the last step, before the final save), hours in. Raises the one-line ConfigError."""
    for i, eval_set in enumerate(evaluation.sets):
        if not os.path.isfile(eval_set.path):
            raise ConfigError(f"evaluation.sets[{i}].path: no such file {eval_set.path!r} (cwd {os.getcwd()})")
    if evaluation.validation:
        resolve_shards(loader.reading(evaluation.validation))


class TrainingEvaluator:
    def __init__(self, evaluation: EvaluationConfig, loader: LoaderSpec, model: nn.Module, rank: int,
                 world_size: int):
        """`loader`: the training loader's spec; prompts and validation batches are built as it builds batches."""
        self.evaluation, self.loader_spec, self.model = evaluation, loader, model
        self.rank, self.world_size = rank, world_size
        self.skips = SkipCounter()
        check_evaluation_paths(evaluation, loader)
        self.sets = [(s, read_items(s.path, self.skips)) for s in evaluation.sets]
        self.builder = PromptBuilder(SpeechTextTokenizer.from_config(loader.data, model.vocab),
                                     evaluation_patcher(loader.model.arch, loader.patching, loader.total_steps)) \
            if self.sets else None

    def due(self, step: int, last: bool) -> bool:
        """Every `interval` steps, and at the `last` step with `at_end`, when there is anything to evaluate."""
        interval = self.evaluation.interval
        scheduled = (interval > 0 and step % interval == 0) or (last and self.evaluation.at_end)
        return scheduled and bool(self.sets or self.evaluation.validation)

    @torch.no_grad()
    def run(self) -> dict:
        """Flat metrics: eval/SET/SETTING/accuracy_{sum,mean} and val_loss{,_text,_speech}."""
        self.model.eval()
        metrics = {}
        for eval_set, items in self.sets:
            results = evaluate(self.model, self.builder, items, eval_set.settings, self.skips,
                               self.evaluation.batch_size, pad_to_multiple=self.loader_spec.data.pad_to_multiple)
            for setting, result in results.items():
                for key in ("accuracy_sum", "accuracy_mean"):
                    metrics[f"eval/{eval_set.name}/{setting}/{key}"] = result[key]
        if self.evaluation.validation:
            metrics.update(self._validation_loss())
        self.model.train()
        return metrics

    def _validation_loss(self) -> dict:
        """The same batches every time: a fresh loader over the validation sources."""
        loader = build_dataloader(self.loader_spec.reading(self.evaluation.validation), self.rank, self.world_size)
        device = next(self.model.parameters()).device
        totals = torch.zeros(6, dtype=torch.float64, device=device)
        for batch in itertools.islice(loader, self.evaluation.validation_batches):
            labels = batch.labels.to(device)
            per_token = self.model(batch.tokens.to(device), batch.patch_lengths.to(device),
                                   batch.closed_early.to(device), targets_of(labels))
            sums = loss_sums(per_token, labels, self.model.vocab)
            totals += torch.stack([sums.total, sums.text, sums.speech, sums.n_total.double(), sums.n_text.double(),
                                   sums.n_speech.double()]).double()
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        total, text, speech, n, n_text, n_speech = totals.tolist()
        return {"val_loss": total / n if n else None, "val_loss_text": text / n_text if n_text else None,
                "val_loss_speech": speech / n_speech if n_speech else None}
