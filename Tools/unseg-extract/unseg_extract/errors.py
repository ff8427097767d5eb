"""The one error type of the package: a paragraph for a human, and an exit code."""


class ExtractError(Exception):
    """A bad input or a failed step, said as one paragraph: the file, what is wrong, what to do.

    The command line prints ``str(error)`` on stderr and exits with ``exit_code`` (1).
    """

    exit_code = 1

    def __init__(self, message: str, path=None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
