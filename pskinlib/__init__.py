"""pskinlib: the library behind the pskin book.

Deep-learning recognition of pigmented skin lesions (melanoma, melanocytic nevus, seborrheic keratosis) on
HAM10000. Dependencies flow one way: ``info`` -> ``data`` -> ``splits`` -> ``cache`` -> ``datasets`` ->
models/weights -> trainer -> metrics -> inspector -> book pipeline.
"""

__version__ = "0.1.0"
