"""Readers: raw files from the data root (else the cache, else fetched and verified) -> numpy.

``sources`` is the registry of every file (URLs, sizes, checksums, licences); ``fetch`` gets a
missing one into the cache, ``$XDG_CACHE_HOME/playbook``.
"""

from playbook.data.paths import DataError, cache_root, data_root
from playbook.data.splits import ImageDataset, Split
