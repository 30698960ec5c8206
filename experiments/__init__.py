"""The paper's claims in miniature: ``python -m experiments.paper_claims --help``.

* ``claims_setup``: the named configurations, the dataset and the training recipe;
* ``attention_flops``: the attention's cost per image, counted from the config;
* ``claims_training``: one run (the library's ``fit``) -> one JSON record; runs in parallel;
* ``claims_report``: Figure 3, Tables 1 and 2 and the results README from the records;
* ``paper_claims``: the command (``--plan``, ``--fast``, the full run);
* ``ten_x``: the dense model after 10 N epochs against the deformable ones after N (chapter 11);
* ``refinement_gap``: why iterative box refinement gains so much in miniature, measured (chapter 11).
"""
