"""Using trained runs: predict, evaluate on other image folders, ensemble runs, fuse in the patient's metadata.

Scores come from :mod:`pskinlib.metrics`, results go into the run's record (:mod:`pskinlib.runs`).

- :mod:`~pskinlib.evaluate.predict`: a run's best checkpoint as a model that predicts image files.
- :mod:`~pskinlib.evaluate.image_folder`: a run on a folder of images with a CSV of their labels.
- :mod:`~pskinlib.evaluate.external_validation`: a run on other collections' labelled folders, per collection and
  pooled, with calibration and the melanoma operating points carried from HAM10000 validation.
- :mod:`~pskinlib.evaluate.ensemble`: averaging runs, and a lesion's images into one decision.
- :mod:`~pskinlib.evaluate.fusion`: the head refitted on image features plus age, sex and body site.
- :mod:`~pskinlib.evaluate.subgroups`: balanced accuracy and melanoma recall by age band, sex and body site.
- :mod:`~pskinlib.evaluate.referral`: referral and biopsy at melanoma thresholds chosen on HAM10000 validation.
"""
