"""Stage 1b of the stream (data.shuffle_buffer > 0): one source's items drawn at random from a buffer filled with
the next items its reader yields (WebDataset's shuffle, made exactly resumable).

State: the reader behind the buffer, the buffered items themselves, and the number of draws so far; each draw is
seeded by (seed, source, reader, draw number), so a restored buffer draws what the uninterrupted one would have.
"""

import random

from lst_train.data.skips import SourceExhausted
from lst_train.data.source_reader import SourceReader, TextItem, item_from_state, item_state
from lst_train.data.utterances import Utterance


def item_epoch(identity: str) -> int:
    """The epoch an item was read in (identities end in '|EPOCH')."""
    return int(identity.rsplit("|", 1)[1])


class ShuffleBuffer:
    def __init__(self, reader: SourceReader, size: int, seed: str):
        """`seed` names this source of this reader (the draws of two readers differ)."""
        self.reader, self.size, self.seed = reader, size, seed
        self.buffer: list[tuple[str, TextItem | Utterance]] = []
        self.draws = 0
        self.exhausted = False
        """The reader raised SourceExhausted (held-out reading): drain the buffer, ask the reader no more."""

    @property
    def epoch(self) -> int:
        return self.reader.epoch

    def next_item(self) -> tuple[str, TextItem | Utterance]:
        """A random one of the buffered items, after filling the buffer to `size`. A bad record raises SkipSample
        from the reader as without a buffer (the stream counts it and asks again, and the filling goes on)."""
        while len(self.buffer) < self.size and not self.exhausted:
            try:
                self.buffer.append(self.reader.next_item())
            except SourceExhausted:
                self.exhausted = True
        if not self.buffer:
            raise SourceExhausted(f"{self.reader.source.path}: every buffered document drawn")
        index = random.Random(f"{self.seed}|{self.draws}").randrange(len(self.buffer))
        self.draws += 1
        self.buffer[index], self.buffer[-1] = self.buffer[-1], self.buffer[index]
        return self.buffer.pop()

    def state_dict(self) -> dict:
        return {"reader": self.reader.state_dict(), "buffer": [item_state(entry) for entry in self.buffer],
                "draws": self.draws, "exhausted": self.exhausted}

    def load_state_dict(self, state: dict) -> None:
        self.reader.load_state_dict(state["reader"])
        self.buffer = [item_from_state(entry) for entry in state["buffer"]]
        self.draws, self.exhausted = state["draws"], state["exhausted"]

    def restart_epoch(self, epoch: int) -> None:
        """Read epoch `epoch` from its beginning, with an empty buffer (another reader split's state)."""
        self.reader.restart_epoch(epoch)
        self.buffer, self.exhausted = [], False
