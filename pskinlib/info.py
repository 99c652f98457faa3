"""One table of facts: class codes, names and colours, the paper's Table 1, the dataset's licence and citation,
and where the official data is downloaded from.

Everything else in pskinlib reads these facts from here instead of repeating them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LesionClass:
    """One HAM10000 diagnosis (``dx``) code with the names and colour the book uses for it."""

    code: str
    name: str
    paper_name: str
    colour: str


# All seven HAM10000 diagnoses, in the order the dataset paper lists them.
CLASSES: dict[str, LesionClass] = {
    c.code: c
    for c in (
        LesionClass("mel", "melanoma", "melanoma", "#d62728"),
        LesionClass("nv", "melanocytic nevus", "pigmented nevus (chromatoma)", "#8c564b"),
        LesionClass("bkl", "benign keratosis-like lesion", "seborrheic keratosis", "#1f77b4"),
        LesionClass("bcc", "basal cell carcinoma", "basal cell carcinoma", "#ff7f0e"),
        LesionClass("akiec", "actinic keratosis / intraepithelial carcinoma", "actinic keratosis", "#9467bd"),
        LesionClass("vasc", "vascular lesion", "vascular lesion", "#e377c2"),
        LesionClass("df", "dermatofibroma", "dermatofibroma", "#17becf"),
    )
}
ALL_CLASSES: tuple[str, ...] = tuple(CLASSES)
# The study's three classes. HAM10000's ``bkl`` stands for the paper's seborrheic keratosis: it groups seborrheic
# keratosis, solar lentigo and lichen-planus-like keratosis.
PAPER_CLASSES: tuple[str, ...] = ("mel", "nv", "bkl")

# The paper's Table 1: images per split and class. Its columns sum to train 6000, validation 1800 and test 460,
# although the paper's text gives 6000 / 1800 / 450.
PAPER_TABLE1: dict[str, dict[str, int]] = {
    "train": {"mel": 1800, "nv": 2400, "bkl": 1800},
    "val": {"mel": 540, "nv": 720, "bkl": 540},
    "test": {"mel": 145, "nv": 180, "bkl": 135},
}
SPLITS: tuple[str, ...] = ("train", "val", "test")

# The paper's two procedures: each network trained without and with class weights (the class_weights schemes
# ``none`` and ``inverse``, pskinlib.train.losses), and its two networks as pskin's model table names them.
PAPER_PROCEDURES: tuple[str, ...] = ("none", "inverse")
PAPER_MODELS: tuple[str, ...] = ("resnet101", "efficientnet_b0")

# The paper's reported results, for comparison in the book (read off its text; not our measurements).
PAPER_REPORTED = {
    "average_accuracy": 0.65,
    "nv_vs_bkl_accuracy": 0.80,
    "hardest_class": "mel",
    "epochs": 100,
    "models": ("resnet101", "efficientnet"),
}

# Always answering one class (the majority, nevus) finds every image of that class and none of the others: a
# balanced accuracy of 1/K on the paper's K classes, the floor every chapter marks.
ONE_ANSWER_BALANCED_ACCURACY = 1 / len(PAPER_CLASSES)

# The class whose missed cases matter most: its thresholds are carried to other images, its recall is reported
# by subgroup, and a referral rule is built on its probability.
MELANOMA = "mel"

# The two tracks a network is trained on, by its config's ``pretrained`` flag: the names tables and labels use.
TRACK_NAMES: dict[bool, str] = {False: "from scratch", True: "ImageNet-pretrained"}
TRACK_SHORT_NAMES: dict[bool, str] = {False: "scratch", True: "pretrained"}

# Published numbers the results chapter shows as anchors. Not comparable one to one: other class sets, other test
# images, often ensembles, extra data and pretrained networks.
PUBLISHED_ANCHORS = (
    {"what": "ISIC 2018 Task 3 winner, balanced multi-class accuracy over 7 classes (held-out challenge test set)",
     "value": 0.885, "source": "Codella et al. 2019, arXiv:1902.03368"},
)

# The patient facts HAM10000_metadata.csv records for each lesion, as spelled there (``unknown`` and blanks mean
# not recorded). ``dx_type`` (how the diagnosis was confirmed) is deliberately absent: it gives the label away
# (only nevi are ever confirmed by follow-up), so no model input may use it.
PATIENT_COLUMNS: tuple[str, ...] = ("age", "sex", "localization")
SEXES: tuple[str, ...] = ("male", "female")
BODY_SITES: tuple[str, ...] = (
    "abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand", "lower extremity", "neck",
    "scalp", "trunk", "upper extremity",
)  # fmt: skip

# Facts about the real dataset, used to check a download and to explain the data in the book.
HAM10000 = {
    "name": "HAM10000",
    "images": 10015,
    "lesions": 7470,
    "images_per_class": {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115},
    "metadata_file": "HAM10000_metadata.csv",
    "metadata_columns": ("lesion_id", "image_id", "dx", "dx_type", *PATIENT_COLUMNS),
    "licence": "CC BY-NC 4.0",
    "licence_url": "https://creativecommons.org/licenses/by-nc/4.0/",
    "citation": (
        "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
        "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018), "
        "doi:10.1038/sdata.2018.161."
    ),
    "doi": "10.1038/sdata.2018.161",
    "homepage": "https://doi.org/10.7910/DVN/DBW86T",
}

# Folder names of the layouts the loader understands (see ``pskinlib.data``).
LAYOUT_FOLDERS = {
    "images": ("images",),
    "official": ("HAM10000_images_part_1", "HAM10000_images_part_2"),
    "isic2018": ("ISIC2018_Task3_Training_Input",),
}
ISIC2018_GROUND_TRUTH = "ISIC2018_Task3_Training_GroundTruth.csv"
ISIC2018_LESION_GROUPINGS = "ISIC2018_Task3_Training_LesionGroupings.csv"

# Where `pskin data download` fetches each dataset from. The ISIC archive publishes no checksums or sizes for these
# files, so md5 and size stay None (the server's Content-Length is checked) and pskin verifies the unpacked content
# instead (pskinlib.data.download.verify_ham10000). ``produces``: what the file must leave in the target folder.
_ISIC2018 = "https://isic-challenge-data.s3.amazonaws.com/2018/"
HAM10000_SOURCES: tuple[dict, ...] = (
    {"name": "ISIC2018_Task3_Training_Input.zip", "url": _ISIC2018 + "ISIC2018_Task3_Training_Input.zip",
     "extract": True, "size": None, "md5": None, "produces": "ISIC2018_Task3_Training_Input"},
    {"name": "ISIC2018_Task3_Training_GroundTruth.zip", "url": _ISIC2018 + "ISIC2018_Task3_Training_GroundTruth.zip",
     "extract": True, "size": None, "md5": None,
     "produces": f"ISIC2018_Task3_Training_GroundTruth/{ISIC2018_GROUND_TRUTH}"},
    {"name": ISIC2018_LESION_GROUPINGS, "url": _ISIC2018 + ISIC2018_LESION_GROUPINGS, "extract": False,
     "size": None, "md5": None, "produces": ISIC2018_LESION_GROUPINGS},
)
_ISIC2017 = "https://isic-challenge-data.s3.amazonaws.com/2017/"
ISIC2017_SOURCES: tuple[dict, ...] = tuple(
    {"name": name, "url": _ISIC2017 + name, "extract": name.endswith(".zip"), "size": None, "md5": None,
     "produces": name.removesuffix(".zip")}
    for name in ("ISIC-2017_Validation_Data.zip", "ISIC-2017_Validation_Part3_GroundTruth.csv",
                 "ISIC-2017_Test_v2_Data.zip", "ISIC-2017_Test_v2_Part3_GroundTruth.csv"))
DOWNLOAD_SOURCES: dict[str, tuple[dict, ...]] = {"ham10000": HAM10000_SOURCES, "isic2017": ISIC2017_SOURCES}

# ISIC 2017 Part 3 as the challenge published it (Codella et al. 2018): images per set and class. The project's shared
# copy leaves out 5 test and 1 validation nevi that duplicate other images (its README says which).
ISIC2017 = {
    "name": "ISIC 2017 Part 3",
    "official_counts": {"ISIC2017_val": {"mel": 30, "nv": 78, "bkl": 42},
                        "ISIC2017_test": {"mel": 117, "nv": 393, "bkl": 90}},
    "licence": "CC BY-NC (ISIC Archive)",
    "citation": ("Codella N. et al. Skin lesion analysis toward melanoma detection: a challenge at the 2017 "
                 "International Symposium on Biomedical Imaging (ISBI), hosted by the International Skin Imaging "
                 "Collaboration (ISIC). ISBI 2018, arXiv:1710.05006."),
}

# How a network's input is scaled, by the weights it was (pre)trained with: (mean, std) per RGB channel of images in
# [0, 1]. torchvision's ImageNet weights expect ImageNet's statistics; from-scratch runs use them too.
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # TensorFlow's EfficientNet-Lite checkpoints expect pixels scaled to [-1, 1] (timm's pretrained_cfg says so).
    "tf_lite": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

SYNTHETIC_MARKER = "PSKIN_SYNTHETIC_DEMO.txt"
SYNTHETIC_WARNING = (
    "These results come from pskin's SYNTHETIC demo images, not from HAM10000: they show that the code runs, "
    "not how well a model recognises skin lesions. Get the real data with `pskin data download` and set "
    "PSKIN_DATA to its folder."
)


def class_names(codes: tuple[str, ...] | list[str]) -> list[str]:
    """Display names for a list of class codes, in the same order."""
    return [CLASSES[c].name for c in codes]


def class_colours(codes: tuple[str, ...] | list[str]) -> list[str]:
    """Plot colours for a list of class codes, in the same order."""
    return [CLASSES[c].colour for c in codes]
