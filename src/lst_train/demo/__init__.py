"""`make demo` / `lst-train demo`: corpus, evaluation set, an equal-FLOPs comparison under torchrun, evaluation,
and a report."""
