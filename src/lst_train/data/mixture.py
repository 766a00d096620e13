"""Stage 3 of the stream: which source the next document comes from.

Mixture weights are shares of training tokens, not of documents (a KJV chapter is hundreds of times longer than a
5-second utterance): the next document comes from the source furthest below its share of the tokens rendered so
far, so the realised shares track the weights within about one document at every point of the stream. Its state
is the tokens and documents taken per source; no randomness.
"""


class TokenShareMixture:
    def __init__(self, shares: list[float]):
        self.shares = shares
        """Each source's wanted share of the tokens (its weight over the sum of the weights)."""
        self.source_tokens = [0] * len(shares)
        self.documents = [0] * len(shares)

    def next_source(self) -> int:
        """The source furthest below its token share (ties: the first listed)."""
        total = sum(self.source_tokens)
        deficits = [share * total - tokens for share, tokens in zip(self.shares, self.source_tokens)]
        return max(range(len(deficits)), key=deficits.__getitem__)

    def took(self, source: int, tokens: int) -> None:
        """A document of `tokens` rendered tokens came from `source`."""
        self.documents[source] += 1
        self.source_tokens[source] += tokens

    def state_dict(self) -> dict:
        return {"source_tokens": list(self.source_tokens), "documents": list(self.documents)}

    def load_state_dict(self, state: dict) -> None:
        self.source_tokens, self.documents = list(state["source_tokens"]), list(state["documents"])
