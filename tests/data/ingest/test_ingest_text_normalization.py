"""Transcripts -> dictionary words for the aligner, each tied to the token as written."""

import pytest

from lst_train.data.ingest.text_normalization import normalize_transcript, number_words, token_words


@pytest.mark.parametrize("text,words", [
    ("7", ["seven"]), ("21", ["twenty", "one"]), ("100", ["one", "hundred"]),
    ("2024", ["two", "thousand", "twenty", "four"]), ("1,250", ["one", "thousand", "two", "hundred", "fifty"]),
    ("1984", ["nineteen", "eighty", "four"]), ("1905", ["nineteen", "oh", "five"]), ("1900", ["nineteen", "hundred"]),
    ("3.5", ["three", "point", "five"]), ("1000000", ["one", "million"]),
])
def test_numbers_are_spelled_as_spoken(text, words):
    assert number_words(text) == words


@pytest.mark.parametrize("token,words", [
    ("HE", ["he"]), ("man,", ["man"]), ("Ill-disposed", ["ill", "disposed"]), ("\u201cDon\u2019t\u201d", ["don't"]),
    ("Caf\u00e9", ["cafe"]), ("21st", ["twenty", "first"]), ("12th", ["twelfth"]), ("40th", ["fortieth"]),
    ("&", ["and"]), ("\u2014", []), ("...", []), ("and/or", ["and", "or"]),
])
def test_tokens_fold_case_accents_punctuation_and_split_compounds(token, words):
    assert token_words(token) == words


def test_punctuation_only_tokens_ride_with_a_neighbour_so_no_text_is_lost():
    tokens, words = normalize_transcript("\u201c Well \u2014 he said, in 1984 .")
    assert tokens == ["\u201c Well \u2014", "he", "said,", "in", "1984 ."]
    assert words == [["well"], ["he"], ["said"], ["in"], ["nineteen", "eighty", "four"]]
    assert " ".join(tokens).split() == "\u201c Well \u2014 he said, in 1984 .".split()
    assert normalize_transcript("-- ...") == ([], [])
