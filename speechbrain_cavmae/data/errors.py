"""Errors raised by the data pipeline for unusable input.

Every problem with one sample (missing file, undecodable stream, clip too
short, unknown label, ...) is reported as a :class:`BadSampleError` that
names the file and the reason, so the training loop can either stop with a
clear message (``on_bad_sample: raise``) or drop the sample
(``on_bad_sample: skip``); no placeholder data is ever substituted.

Example
-------
>>> err = BadSampleError("/data/a.wav", "file not found", sample_id="a")
>>> str(err)
"sample 'a': /data/a.wav: file not found"
>>> isinstance(err, RuntimeError)
True
"""


class BadSampleError(RuntimeError):
    """A sample that cannot be loaded.

    Arguments
    ---------
    path : str
        The offending file (or folder).
    reason : str
        What is wrong with it.
    sample_id : str, optional
        Manifest id of the sample, when known.
    """

    def __init__(self, path, reason, sample_id=None):
        self.path = str(path)
        self.reason = str(reason)
        self.sample_id = sample_id
        prefix = f"sample {sample_id!r}: " if sample_id is not None else ""
        super().__init__(f"{prefix}{self.path}: {self.reason}")

    def __reduce__(self):  # keep attributes across DataLoader worker pickling
        return (type(self), (self.path, self.reason, self.sample_id))

    def with_id(self, sample_id):
        """Same error, tagged with a manifest id."""
        return type(self)(self.path, self.reason, sample_id)


class ManifestError(ValueError):
    """A manifest that cannot be used: unreadable, malformed, empty, or with entries that
    lack what the task needs (e.g. labels for fine-tuning). The message names the file
    (and the entry) and the problem.

    Example
    -------
    >>> str(ManifestError("train.json", "not valid JSON (line 1, column 2)"))
    'train.json: not valid JSON (line 1, column 2)'
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))
