"""The task packages. Importing this package registers every task; it does nothing else.
A new task is one folder here plus its line below."""

from . import bytes, cram, embeddings, prompt, sentence  # noqa: F401
