"""Dataset loading for the field's formats (HKUDS pickles, PromptMM/LATTICE JSON, MMRec)."""

from training.data.dataset import Dataset
from training.data.errors import DataFormatError
from training.data.loader import FORMATS, detect_format, load_dataset

__all__ = ["FORMATS", "DataFormatError", "Dataset", "detect_format", "load_dataset"]
