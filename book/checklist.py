"""The chapter "Reporting checklist and model card": what the CLEAR Derm checklist asks of a report on an image-based
dermatology model, answered from this build's data and records, with the model's intended use, its limits and its
results outside HAM10000 on one page.

CLEAR Derm (Daneshjou et al., JAMA Dermatology 2022) holds 25 items in four domains: data, technique, technical
assessment and application. Its own item list (the paper's Table 1) was not available to this project, so the rows
below follow the four domains and the recommendations as published summaries of the checklist describe them
(:data:`SOURCES`), each answered from the records or marked not available with the reason.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd
from PIL import Image

from pskinlib.data.appearance import NOT_ESTIMABLE
from pskinlib.errors import ParameterError
from pskinlib.evaluate.external_validation import INTERNAL
from pskinlib.info import CLASSES, TRACK_NAMES

from .appearance import ARTIFACTS, BANDS, DARKER_BANDS, prevalence
from .format import interval
from .runs import EXTERNAL_EVALUATION

NOT_AVAILABLE = "not available"
# Where the recommendations' wording comes from (the checklist paper's Table 1 was not at hand).
SOURCES = {
    "paper": "Daneshjou R. et al., JAMA Dermatology 158(1):90–96 (2022), doi:10.1001/jamadermatol.2021.4915",
    "mdedge": "MDedge Dermatology, \"Skin imaging working group releases first guidelines for AI algorithms used in "
              "dermatology\" (news report of the guidelines, December 2021)",
    "responsible.ai": "https://www.responsible.ai/blog/ai-use-in-dermatology-a-recommended-checklist",
}
# Where HAM10000's images were taken (Tschandl et al., Sci. Data 5, 180161, 2018).
HAM10000_SITES = ("the Department of Dermatology of the Medical University of Vienna, Austria",
                  "Cliff Rosendahl's skin cancer practice in Queensland, Australia")
# The reasons an ITA is not estimable that come from the dermatoscope's tint (pskinlib.data.appearance).
TINT_REASONS = ("no yellow", "pink-violet tint")
INTENDED_USE = ("research and teaching: reproducing and questioning a published study; not diagnosis, not triage, "
                "and not a medical device")


def image_sizes(table: pd.DataFrame) -> Counter:
    """How many images of ``table`` (its ``path`` column) have each (width, height), read from the files' headers."""
    sizes = Counter()
    for path in table["path"]:
        with Image.open(path) as image:
            sizes[image.size] += 1
    return sizes


def _sizes_phrase(sizes: Counter) -> str:
    (common, n), total = sizes.most_common(1)[0], sum(sizes.values())
    rest = f"; {total - n:,} other sizes" if total > n else ""
    return f"{n:,} of {total:,} images are {common[0]}x{common[1]} px{rest}"


def _link(chapter: str, text: str) -> str:
    return f'<a href="{chapter}.html">{text}</a>'


def _tone_answer(appearance: pd.DataFrame | None) -> str:
    """The skin-tone row: what HAM10000 records (nothing) and, with estimates, how many images have one and their
    bands, with what an estimate cannot tell."""
    if appearance is None:
        return (f"{NOT_AVAILABLE}: HAM10000 records no skin tone (Fitzpatrick type), and this build made no "
                "estimate from the pixels")
    counts = appearance["ita_category"].value_counts()
    total, missing = len(appearance), int(counts.get(NOT_ESTIMABLE, 0))
    estimable = total - missing
    bands = ", ".join(f"{band} {int(counts.get(band, 0)):,}" for band in BANDS)
    darker = sum(int(counts.get(band, 0)) for band in DARKER_BANDS)
    kinds = appearance.loc[appearance["ita_category"] == NOT_ESTIMABLE, "ita_reason"].fillna("").str.split(":").str[0]
    tinted = int(kinds.isin(TINT_REASONS).sum())
    return (f"HAM10000 records no skin tone (Fitzpatrick type); estimated from the pixels as the ITA of the skin "
            f"around the lesion: {missing:,} of {total:,} images ({missing / total:.0%}) not estimable, {tinted:,} "
            f"of them because the dermatoscope's light tints the skin (no yellow left, or a pink-violet hue); of the "
            f"{estimable:,} estimable: {bands} ({darker:,} brown or dark). An ITA seen through a dermatoscope is not "
            "a Fitzpatrick type, and each dermatoscope's light shifts it" if total
            else f"{NOT_AVAILABLE}: no image was measured")


def _artifact_answer(appearance: pd.DataFrame | None) -> str:
    """The artifact row: HAM10000 labels none; with estimates, the share of images where each was found."""
    if appearance is None:
        return (f"{NOT_AVAILABLE}: HAM10000 labels no artifact, and this build made no estimate from the pixels; the "
                "dark corners of the dermatoscope are measured per collection")
    found = "; ".join(f"{shown} {prevalence(appearance, column):.1%}"
                      for column, (shown, _, _) in ARTIFACTS.items())
    by_class = ", ".join(f"{CLASSES[c].name} {prevalence(appearance, 'dark_border', c):.1%}"
                         for c in appearance["dx"].value_counts().index)
    return (f"HAM10000 labels none; estimated from the pixels, share of the study's images where each was found: "
            f"{found} (dark border by class: {by_class}); rulers are not detected, and an estimate misses faint "
            "hair and can take a blue lesion for ink (see the data chapter's gallery)")


def model_card(all_images: pd.DataFrame, study_images: pd.DataFrame, runs: dict,
               appearance: pd.DataFrame | None = None) -> pd.DataFrame:
    """The checklist's rows (``domain, recommendation, answer, shown in``), answered from the data (``all_images``:
    HAM10000's seven classes, ``study_images``: the study's three, both ``load_ham10000(...).table``), the
    headline runs (``{label: RunRecord}``, :func:`book.clinical.headline_runs`) and the estimated skin tone and
    artifacts of the study's images (``appearance``: :func:`book.appearance.ham10000_appearance`; without it,
    those rows are not available)."""
    if appearance is not None and not {"image_id", "dx", "ita_category", *ARTIFACTS} <= set(appearance.columns):
        raise ParameterError("appearance: need an appearance table (book.appearance.ham10000_appearance) with "
                             "image_id, dx, ita_category and the artifact columns.")
    sizes = image_sizes(all_images)
    confirmed = study_images["dx_type"].value_counts(normalize=True)
    left_out = sorted(set(all_images["dx"]) - set(study_images["dx"]))
    rows = [
        ("data", "image type and how the images were acquired",
         f"dermoscopic images of pigmented lesions, taken at {HAM10000_SITES[0]} and at {HAM10000_SITES[1]}; the "
         "camera and lighting of each image are not recorded", _link("01_data_exploration", "the data")),
        ("data", "image resolution and quality", f"the copies used here: {_sizes_phrase(sizes)}; no quality score is "
         "recorded", _link("01_data_exploration", "the data")),
        ("data", "image artifacts (pen marks, hair, rulers, dark corners)", _artifact_answer(appearance),
         _link("01_data_exploration", "the data") + ", " + _link("06_clinical", "for whom it fails")),
        ("data", "patients: age, sex, body site, ancestry",
         f"age, sex and body site recorded for {study_images['age'].notna().mean():.0%}, "
         f"{(study_images['sex'] != 'unknown').mean():.0%} and "
         f"{(study_images['localization'] != 'unknown').mean():.0%} of the study's images; ancestry: "
         f"{NOT_AVAILABLE}, HAM10000 does not record it", _link("06_clinical", "for whom it fails")),
        ("data", "skin tone", _tone_answer(appearance),
         _link("01_data_exploration", "the data") + ", " + _link("06_clinical", "for whom it fails")),
        ("data", "the classes, and those left out of training",
         f"{len(study_images):,} images of {study_images['lesion_id'].nunique():,} lesions: "
         + ", ".join(f"{CLASSES[c].name} {n:,}" for c, n in study_images["dx"].value_counts().items())
         + f"; HAM10000's other diagnoses are left out ({', '.join(CLASSES[c].name for c in left_out)})",
         _link("01_data_exploration", "the data")),
        ("data", "how the data were split",
         "by lesion, never by image: no lesion is in two of training, validation and test "
         "(grouped, 70 / 15 / 15 % of each class's images)", _link("01_data_exploration", "the data")),
        ("technique", "how the labels were obtained",
         "HAM10000's diagnoses, confirmed by " + ", ".join(f"{kind} {share:.0%}" for kind, share in confirmed.items())
         + " of the study's images (histo: histopathology)", _link("01_data_exploration", "the data")),
    ]
    for label, run in runs.items():
        config = run.config
        rows.append(("technique", f"the model and its training ({label})",
                     f"{config.model}, {TRACK_NAMES[config.pretrained]}, {config.image_size} px, {config.epochs} "
                     f"epochs, {config.optimizer} at lr {config.lr:g}, {config.class_weights} class weights, the epoch "
                     f"of best validation {config.select_metric.replace('_', ' ')} kept; every parameter is in the "
                     "run's config.json", _link("04_results", "results")))
    rows.append(("technique", "code and data availability",
                 "the code of this book and library is public with the book (MIT); HAM10000 and ISIC 2017 are public "
                 "(CC BY-NC)", _link("intro", "the front page")))
    for label, run in runs.items():
        test = run.metrics["test"]
        ci = test["bootstrap"]["balanced_accuracy"]
        rows.append(("technical assessment", f"performance on held-out test lesions ({label})",
                     f"balanced accuracy {interval(test['balanced_accuracy'], ci['low'], ci['high'])}, accuracy "
                     f"{test['accuracy']:.3f}, macro AUC {test['roc_auc_ovr']['macro']:.3f} on {test['n']:,} test "
                     "images", _link("04_results", "results")))
        evaluation = run.evaluations().get(EXTERNAL_EVALUATION)
        if evaluation is None:
            outside = f"{NOT_AVAILABLE}: this build had no external images"
        else:
            groups = evaluation.metrics["groups"]
            outside = "; ".join(f"{name} {report['balanced_accuracy']:.3f} ({report['n']:,} images)"
                                for name, report in groups.items() if name != INTERNAL)
            outside = f"balanced accuracy {outside}"
        rows.append(("technical assessment", f"performance on images of another collection ({label})", outside,
                     _link("05_external", "beyond HAM10000")))
    rows += [
        ("technical assessment", "performance by subgroup and calibration",
         "by age band, sex and body site with 95 % intervals"
         + ("; by estimated ITA band and by each artifact found or not, with the same intervals"
            if appearance is not None else "") + "; calibration before and after temperature scaling",
         _link("06_clinical", "for whom it fails") + ", " + _link("05_external", "beyond HAM10000")),
        ("application", "intended use", INTENDED_USE, _link("intro", "the front page")),
        ("application", "use in a clinic: referral and biopsy",
         "thresholds chosen on HAM10000 validation, carried to test and other collections: sensitivity, specificity, "
         "share referred and biopsies per melanoma", _link("06_clinical", "how many it refers")),
        ("application", "limits",
         "three classes only (a lesion of another kind is forced into one of them); small CPU-trained networks; "
         "no skin tone recorded"
         + (f", and an estimated ITA for only {(appearance['ita_category'] != NOT_ESTIMABLE).mean():.0%} of the "
            f"images, {appearance['ita_category'].isin(DARKER_BANDS).sum():,} of them brown or dark"
            if appearance is not None and len(appearance) else "")
         + "; images from two centres; other collections' images lose accuracy",
         _link("05_external", "beyond HAM10000")),
    ]
    return pd.DataFrame(rows, columns=["domain", "recommendation", "answer", "shown in"])


def card_counts(card: pd.DataFrame) -> dict:
    """How many rows each domain has and how many are answered ``not available``."""
    return {"rows": len(card), "not_available": int(card["answer"].str.contains(NOT_AVAILABLE).sum()),
            "domains": card["domain"].nunique()}


def unanswered(card: pd.DataFrame) -> str:
    """The recommendations answered ``not available``, as a phrase ("none" without any)."""
    rows = card.loc[card["answer"].str.contains(NOT_AVAILABLE), "recommendation"].tolist()
    return "; ".join(rows) if rows else "none"


def describe_sources() -> str:
    """The sources of the recommendations' wording, as a Markdown list."""
    return "\n".join(f"- {text}" for text in SOURCES.values())
