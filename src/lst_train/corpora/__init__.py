"""Offline corpus and benchmark building: espeak-ng speech with word timings, the KJV demo corpus and its spoken
evaluation set, and converters of published benchmarks (StoryCloze, HellaSwag) to evaluation items. The streaming
pipeline (lst_train.data) and the evaluation (lst_train.evaluation) only read what these write."""
