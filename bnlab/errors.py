"""The one exception type that means "the user's input is wrong".

The CLI turns it into a single line on stderr and exit code 2. Everything else
(a bug, an interrupted run) keeps its traceback. Divergence of an arm is not an
error at all: it is a recorded result.
"""


class BnlabError(Exception):
    """Bad input: a config value, a missing or corrupt dataset, an unusable path.

    The message names the problem and the fix in one line, e.g.
    ``optim.lr=-0.1 must be > 0; pass e.g. optim.lr=0.1``.
    """

    exit_code = 2
