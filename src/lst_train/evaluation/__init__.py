"""Multiple-choice story-completion evaluation (S→S, T→T, S→T, T→S) by log-likelihood of the endings."""
