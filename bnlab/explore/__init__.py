"""bnlab-explore: an interactive, self-contained HTML explorer of a run's (or a sweep's) records.

Views: activations over training (``activations``), training vs inference statistics (``bnstats``),
a BN playground on a saved batch of real activations (``playground``), every curve (``curves``);
``page`` assembles them, ``cli`` is the console script.
"""
