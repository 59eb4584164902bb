"""Readers: raw files under PLAYBOOK_DATA_DIR -> verified numpy arrays."""

from playbook.data.paths import DataError, data_root
from playbook.data.splits import ImageDataset, Split
