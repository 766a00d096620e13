"""Where a corpus's utterances are: LibriSpeech-layout trees, jsonl / tsv manifests, plain folders of audio + .txt.

Each source argument becomes a sorted list of `InputUtterance`s (key, audio path, transcript, optional word
timings and speaker). What cannot become one — an audio file without a transcript, a manifest line without audio,
a transcript that is not UTF-8, a key already taken — is skipped and counted here, before any audio is read.
"""

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lst_train.data.skips import SkipCounter

KEPT_AUDIO = ("flac", "wav", "ogg")
"""Formats the loader reads: copied into shards byte for byte."""
CONVERTED_AUDIO = ("mp3", "opus", "sph", "aiff", "aif")
"""Other formats libsndfile reads: re-encoded as 16-bit FLAC when packed."""
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class InputUtterance:
    key: str
    """Sample key in the shards (letters, digits, '_' and '-': a tar member is KEY.EXT)."""
    audio: str
    """Path of the audio file."""
    text: str
    """The transcript as given."""
    words: tuple[dict, ...] | None = None
    """Word timings given by the source ({word, start, end} in seconds), kept as they are."""
    speaker: str | None = None


def sample_key(name: str) -> str:
    """A path or id as a shard key: directories joined by '-', other characters outside [A-Za-z0-9_-] as '_'."""
    return _KEY_CHARS.sub("_", name.replace(os.sep, "-").replace("/", "-"))


def _audio_files(root: Path) -> dict[str, Path]:
    """Audio files under root by path without extension (relative to root)."""
    found = {}
    for path in sorted(root.rglob("*")):
        ext = path.suffix[1:].lower()
        if path.is_file() and ext in KEPT_AUDIO + CONVERTED_AUDIO:
            found.setdefault(str(path.relative_to(root).with_suffix("")), path)
    return found


def _read_text(path: Path, skips: SkipCounter) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        skips.add("invalid_utf8", str(path), str(err))
    except OSError as err:
        skips.add("missing_transcript", str(path), str(err))
    return None


def librispeech_inputs(root: Path, skips: SkipCounter) -> list[InputUtterance]:
    """`SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt` lines `ID TEXT`, audio `ID.flac` next to it; speaker = ID's
    first field."""
    audio = {Path(name).name: path for name, path in _audio_files(root).items()}
    found = []
    for trans in sorted(root.rglob("*.trans.txt")):
        for number, raw in enumerate(trans.read_bytes().splitlines()):
            uid_bytes, _, text_bytes = raw.strip().partition(b" ")
            uid = uid_bytes.decode("utf-8", "replace")
            if not uid:
                continue
            path = audio.pop(uid, None)
            try:
                text = text_bytes.decode("utf-8")
            except UnicodeDecodeError as err:  # that line only; its audio is not also a missing transcript
                skips.add("invalid_utf8", f"{trans}:{number + 1}", str(err))
                continue
            if path is None:
                skips.add("missing_audio", f"{trans}:{number + 1}", f"no audio file named {uid}.*")
                continue
            found.append(InputUtterance(sample_key(uid), str(path), text, speaker=uid.split("-")[0]))
    for uid, path in sorted(audio.items()):
        skips.add("missing_transcript", str(path), "no line for it in any *.trans.txt")
    return found


def folder_inputs(root: Path, skips: SkipCounter) -> list[InputUtterance]:
    """Audio files with a same-named .txt transcript, anywhere under root; key = relative path."""
    found = []
    for name, path in _audio_files(root).items():
        transcript = path.with_suffix(".txt")
        if not transcript.is_file():
            skips.add("missing_transcript", str(path), f"no {transcript.name} next to it")
            continue
        text = _read_text(transcript, skips)
        if text is not None:
            found.append(InputUtterance(sample_key(name), str(path), text.strip()))
    return found


def _manifest_rows(path: Path, skips: SkipCounter):
    """(line number, dict) per manifest row; jsonl objects or tsv rows under a header."""
    try:
        content = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        skips.add("invalid_utf8", str(path), str(err))
        return
    if path.suffix == ".tsv":
        for number, row in enumerate(csv.DictReader(content.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)):
            yield number + 2, row
        return
    for number, line in enumerate(content.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as err:  # also ints over 4300 digits, nesting past the stack
            skips.add("invalid_manifest", f"{path}:{number + 1}", str(err))
            continue
        yield number + 1, row


def _field(row: dict, *names: str):
    return next((row[n] for n in names if row.get(n) not in (None, "")), None)


def manifest_inputs(path: Path, skips: SkipCounter) -> list[InputUtterance]:
    """jsonl lines `{"audio", "text", "words"?, "speaker"?, "id"?}` or a tsv with a header naming `audio` (or
    `path`), `text` (or `sentence`, `transcript`), optionally `speaker` (or `client_id`), `id`, `words` (JSON);
    relative audio paths are relative to the manifest's directory."""
    found = []
    for number, row in _manifest_rows(path, skips):
        where = f"{path}:{number}"
        audio = _field(row, "audio", "path", "audio_path") if isinstance(row, dict) else None
        text = _field(row, "text", "sentence", "transcript") if isinstance(row, dict) else None
        if not isinstance(audio, str) or not isinstance(text, str):
            skips.add("invalid_manifest", where, "needs an 'audio' path and a 'text' string")
            continue
        words = row.get("words")
        if isinstance(words, str) and words:
            try:
                words = json.loads(words)
            except (ValueError, RecursionError) as err:
                skips.add("invalid_manifest", where, f"'words' is not JSON: {err}")
                continue
        audio_path = path.parent / audio
        if not audio_path.is_file():
            skips.add("missing_audio", where, f"{audio_path} does not exist")
            continue
        key = str(_field(row, "id", "key") or Path(audio).with_suffix(""))
        speaker = _field(row, "speaker", "client_id", "speaker_id")
        found.append(InputUtterance(sample_key(key), str(audio_path), text.strip(),
                                    tuple(words) if isinstance(words, list) and words else None,
                                    None if speaker is None else str(speaker)))
    return found


def source_inputs(source: str, skips: SkipCounter) -> list[InputUtterance]:
    """The utterances of one source argument, by its layout."""
    path = Path(source)
    if path.is_file() and path.suffix in (".jsonl", ".tsv"):
        return manifest_inputs(path, skips)
    if path.is_dir():
        if next(path.rglob("*.trans.txt"), None) is not None:
            return librispeech_inputs(path, skips)
        return folder_inputs(path, skips)
    raise FileNotFoundError(f"{source}: not a directory (LibriSpeech tree or audio + .txt folder) or a "
                            f".jsonl / .tsv manifest")


def discover(sources: list[str], skips: SkipCounter) -> list[InputUtterance]:
    """All sources' utterances in order (sources as given, each sorted); a key seen before is skipped."""
    seen, found = set(), []
    for source in sources:
        for utterance in source_inputs(source, skips):
            if utterance.key in seen:
                skips.add("duplicate_key", utterance.audio, f"key {utterance.key} is already taken")
                continue
            seen.add(utterance.key)
            found.append(utterance)
    return found
