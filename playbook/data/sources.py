"""The one registry of every file a study or weight loader reads, and where it comes from.

Each ``Source`` says where the file sits in a data root (``mnist/train-images-idx3-ubyte.gz``),
its size and checksums, the URLs it is fetched from (the official one first, then the mirrors
torchvision, TFDS and Keras use), its licence and what to cite. Checksums are the publishers' own
where they publish one (TFDS's sha256 for MNIST, Fashion-MNIST and the CIFAR-10 tarball, the CIFAR
page's md5, Keras's ``file_hash`` md5 for the VGG h5 files), else the ones recorded in each data
folder's ``SOURCE.md``. Readers (``mnist``, ``cifar10``, ``text``, ``image_folder``,
``weights.locate``) take their checksums from here, so there is one table to trust and to update.

A mirror (``PLAYBOOK_MIRROR``) is laid out exactly like a data root: ``<mirror>/<Source.path>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
from typing import Mapping


@dataclasses.dataclass(frozen=True)
class Digest:
  """One accepted copy of a file: its size and its sha256 and/or md5 (empty: not checked).

  A file is accepted when it matches every non-empty field of one of its source's digests.
  """
  size: int
  sha256: str = ""
  md5: str = ""
  copy: str = ""  # Which copy this is, when more than one is accepted.

  def describe(self) -> str:
    parts = [f"{self.size} bytes"]
    parts += [f"sha256 {self.sha256}"] if self.sha256 else []
    parts += [f"md5 {self.md5}"] if self.md5 else []
    return ", ".join(parts) + (f" ({self.copy})" if self.copy else "")


@dataclasses.dataclass(frozen=True)
class Archive:
  """How a fetched archive becomes a folder: members under ``strip`` whose remaining path matches
  ``include`` are unpacked into ``into`` (relative to the data root), then checked.

  Checks: ``member_md5`` (published md5 of each member, all required), and/or ``manifest``: a
  ``sha256sum`` listing of the members, sorted by path, whose own sha256 must be
  ``manifest_sha256``; it is written into the folder, where the reader checks every file against it.
  """
  into: str
  strip: str
  include: str
  member_md5: Mapping[str, str] = dataclasses.field(default_factory=dict)
  manifest: str = ""
  manifest_sha256: str = ""
  # Checksum listings a reader accepts in such a folder, in order of preference (a data root may
  # hold another copy, e.g. the resized cats and dogs with their resized.sha256).
  listings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Source:
  """A file in a data root: where it sits, what it must hash to, where to get it."""
  path: str
  dataset: str
  digests: tuple[Digest, ...]
  urls: tuple[str, ...]
  licence: str
  citation: str
  archive: Archive | None = None
  # sha256 of a compressed file's decompressed content: the same data recompressed (another gzip
  # level or tool) is accepted by it, where the container's own checksum would refuse it.
  content_sha256: str = ""

  @property
  def name(self) -> str:
    return self.path.rsplit("/", 1)[-1]

  @property
  def size(self) -> int:
    """The publisher's size (the first digest's), for progress bars and listings."""
    return self.digests[0].size

  @property
  def target(self) -> str:
    """What a reader uses, relative to a data root: the file, or an archive's folder."""
    return self.archive.into if self.archive else self.path


def manifest_text(entries: Mapping[str, str]) -> str:
  """The canonical ``sha256sum`` listing of {relative path: sha256}: sorted by path, two spaces."""
  return "".join(f"{sha}  {rel}\n" for rel, sha in sorted(entries.items()))


def manifest_sha256(entries: Mapping[str, str]) -> str:
  return hashlib.sha256(manifest_text(entries).encode()).hexdigest()


def parse_manifest(text: str) -> dict[str, str]:
  """``sha256sum`` output (``<sha>  <path>`` or ``<sha> *<path>``) -> {path: sha}."""
  entries = {}
  for line in text.splitlines():
    if line.strip():
      sha, rel = line.split(maxsplit=1)
      entries[rel.lstrip("*")] = sha
  return entries


# ------------------------------------------------------------------------------- licences

MNIST_LICENCE = "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes), as TFDS and Keras record it"
MNIST_CITATION = ("Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, Gradient-based learning applied to "
                  "document recognition, Proc. IEEE 86(11), 1998")
FASHION_LICENCE = "MIT (Copyright 2017 Zalando SE)"
FASHION_CITATION = ("H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a Novel Image Dataset for "
                    "Benchmarking Machine Learning Algorithms, arXiv:1708.07747, 2017")
CIFAR_LICENCE = ("none stated by the CIFAR page, which asks users to cite the tech report; do not "
                 "redistribute")
CIFAR_CITATION = ("A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, Technical "
                  "Report, University of Toronto, 2009")
ANNA_LICENCE = ("public domain in the USA (Tolstoy, tr. Constance Garnett, 1901; Project "
                "Gutenberg eBook #1399, whose licence text ends the file)")
ANNA_CITATION = "Leo Tolstoy, Anna Karenina, tr. Constance Garnett (Project Gutenberg #1399)"
VGG_LICENCE = "CC BY 4.0 (Karen Simonyan and Andrew Zisserman, Visual Geometry Group, Oxford)"
VGG_CITATION = ("K. Simonyan, A. Zisserman, Very Deep Convolutional Networks for Large-Scale Image "
                "Recognition, ICLR 2015")
CATS_DOGS_LICENCE = ("not openly licensed: Kaggle's Dogs vs. Cats (Asirra, Microsoft Research; "
                     "photos from Petfinder.com), redistributed by Google for its tutorials "
                     "without a stated licence; use locally, do not redistribute")
CATS_DOGS_CITATION = ("J. Elson, J. Douceur, J. Howell, J. Saul, Asirra: A CAPTCHA that Exploits "
                      "Interest-Aligned Manual Image Categorization, ACM CCS 2007")
GATYS_CITATION = ("L. A. Gatys, A. S. Ecker, M. Bethge, Image Style Transfer Using Convolutional "
                  "Neural Networks, CVPR 2016")

# --------------------------------------------------------------------------- MNIST family

MNIST_URLS = ("https://storage.googleapis.com/cvdf-datasets/mnist/",
              "https://ossci-datasets.s3.amazonaws.com/mnist/")
FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
                "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/"
                "b2617bb6d3ffa2e429640350f613e3291e10b141/data/fashion/")
# file -> (bytes, sha256 as TFDS records it, md5 as torchvision records it, sha256 of the
# decompressed IDX file, measured on these originals).
IDX_FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte.gz": (
            28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte.gz": (
            1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "9fb629c4189551a2d022fa330f9573f3",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte.gz": (
            4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "ec29112dd5afa0611ce80d1b7f02629c",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte.gz": (
            29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "25c81989df183df01b3e8a0aad5dffbe",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte.gz": (
            4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "bef4ecab320f06d8554ea6380940ec79",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte.gz": (
            5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "bb300cfdad3c16e7a12a480ee83cd310",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}


def _idx_sources() -> list[Source]:
  out = []
  for dataset, files in IDX_FILES.items():
    urls = MNIST_URLS if dataset == "mnist" else FASHION_URLS
    licence, citation = ((MNIST_LICENCE, MNIST_CITATION) if dataset == "mnist"
                         else (FASHION_LICENCE, FASHION_CITATION))
    for name, (size, sha, md5, content) in files.items():
      out.append(Source(f"{dataset}/{name}", dataset, (Digest(size, sha, md5),),
                        tuple(u + name for u in urls), licence, citation,
                        content_sha256=content))
  return out


# ------------------------------------------------------------------------------- CIFAR-10

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TARBALL = Digest(170498071,
                         "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                         "c58f30108f718f92721af3b95e74349a")
CIFAR10_BATCHES = "cifar-10-batches-py"
# member of cifar-10-batches-py/ -> md5 (torchvision.datasets.CIFAR10's lists).
CIFAR10_BATCH_MD5 = types.MappingProxyType({
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
})
# The LOSSY JPEG copy a data root may hold instead (cifar10/SOURCE.md): sha256 of its
# images.sha256 index and of the decoded arrays. Not fetchable: read when present.
CIFAR10_JPEG_INDEX_SHA256 = "f10d4c9e536a564f17fa5e8d68ba087d1235e60cd1f21700e11ff43f0647bbb0"
CIFAR10_JPEG_DECODED_SHA256 = types.MappingProxyType({
    "train": "bf3aabd52be912dae02a0435296c4dab5289524b57f55cd162dc4796935a611b",
    "test": "5a6aa8185204d80b65d3dfb540696dadd5f10d185ded226a96665d3e0fc6259f",
})

CIFAR10 = Source(
    "cifar10/cifar-10-python.tar.gz", "cifar10", (CIFAR10_TARBALL,), (CIFAR10_URL,),
    CIFAR_LICENCE, CIFAR_CITATION,
    Archive(into=f"cifar10/{CIFAR10_BATCHES}", strip=f"{CIFAR10_BATCHES}/",
            include="|".join(CIFAR10_BATCH_MD5).replace(".", r"\."),
            member_md5=CIFAR10_BATCH_MD5))

# ----------------------------------------------------------------------------------- text

ANNA = Source(
    "text/anna.txt", "anna",
    (Digest(2025486, "568bb39fc78aca98e9db91c4329dcd1aa5ec4c3df3aca2064ce5d6f023ae16c9"),),
    ("https://raw.githubusercontent.com/udacity/deep-learning-v2-pytorch/"
     "c9404fc86181fc3f0906b368697268257f348535/recurrent-neural-networks/char-rnn/data/anna.txt",
     "https://raw.githubusercontent.com/udacity/deep-learning/"
     "6d8bdf6596a1243cf95981ccc815e4ab49bf5cc8/intro-to-rnns/anna.txt"),
    ANNA_LICENCE, ANNA_CITATION)

# ------------------------------------------------------------------------- style images

_JCJ = ("https://raw.githubusercontent.com/jcjohnson/neural-style/"
        "07c4b8299f8fbdafec0c514fc820ff1d7ff62e46/examples/inputs/")
_JCJ_PT = ("https://raw.githubusercontent.com/ProGamerGov/neural-style-pt/"
           "72514050755394270abf526252cb9ff95c20dcf2/examples/inputs/")
_UDACITY = ("https://raw.githubusercontent.com/udacity/deep-learning-v2-pytorch/"
            "c9404fc86181fc3f0906b368697268257f348535/style-transfer/images/")
_LENGSTROM = ("https://raw.githubusercontent.com/lengstrom/fast-style-transfer/"
              "0d3d981f7ab948253d355585bdbdfa914247b4d0/examples/style/")
_PD = "public domain (the painter died more than 70 years ago)"
_UNVERIFIED = "photograph; photographer and licence not stated: unverified, use locally only"
_IN_COPYRIGHT = "in copyright: use locally to reproduce the tutorial only, do not redistribute"
# file -> (bytes, sha256, urls, licence): style/SOURCE.md.
STYLE_FILES = {
    "tubingen.jpg": (406531, "e67d1869f01fd805385c681a80d9ebcf0f70ea4a5fe6127f0606bb1c7f4bf506",
                     (_JCJ, _JCJ_PT), _UNVERIFIED),
    "starry_night.jpg": (315236,
                         "0592ab0f7b51b3ce72608a95e53880bd93971e5b48f93a0ce8dfd3cbccf3d098",
                         (_JCJ, _JCJ_PT), _PD + ": Van Gogh, The Starry Night (1889)"),
    "the_scream.jpg": (216723, "f3075cddeb974a9ee1d6418f7f33fd05185a7ac7dcb4288bd2805d499a9dcaee",
                       (_JCJ, _JCJ_PT), _PD + ": Munch, The Scream (1893)"),
    "shipwreck.jpg": (144730, "4f7cf34e3cd4a5daaf3f421f059ca9a01aaa2a3afd7243d6670c9c8bc001a213",
                      (_JCJ, _JCJ_PT), _PD + ": Turner, The Shipwreck of the Minotaur"),
    "wave.jpg": (123262, "54f19686bea5117c0bb68ce4425dbed4efafa3e8d7cafe35f0fae80b8223f4be",
                 (_LENGSTROM,), _PD + ": Hokusai, The Great Wave off Kanagawa"),
    "octopus.jpg": (92235, "bbacb314a01756c441775947931ec4a9fe4405d33ef4e848852386c5447873c9",
                    (_UDACITY,), _UNVERIFIED),
    "hockney.jpg": (18752, "316ab50d7cf7dd04f4cf87e60d2061b6583a99b5d8624a2c168100651018bd68",
                    (_UDACITY,), _IN_COPYRIGHT + " (David Hockney)"),
    "space_needle.jpg": (660207,
                         "aff2911f8c0c034bb65034c13730a263ae44d8bd5b92425d3231bab8bf0a9026",
                         (_UDACITY,), _UNVERIFIED),
    "delaunay.jpg": (102687, "2f444f0102cd5e594d3e8a2c00ae12d74c21c08833d6b7be87d3c81f72befc22",
                     (_UDACITY,), "Delaunay: public domain if Robert, " + _IN_COPYRIGHT
                     + " if Sonia"),
}


def _style_sources() -> list[Source]:
  return [Source(f"style/{name}", "style", (Digest(size, sha),), tuple(u + name for u in urls),
                 licence, GATYS_CITATION)
          for name, (size, sha, urls, licence) in STYLE_FILES.items()]


# -------------------------------------------------------------------------------- weights

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg{depth}/"
FCHOLLET_WEIGHTS_URL = "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/"
VGG_NOTOP = "vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"
# depth -> accepted copies of the convolutional base. The file checksum only gates the download;
# the tensors are what load_vgg verifies (playbook/weights/vgg.py TENSOR_SHA256).
VGG_NOTOP_DIGESTS = {
    16: (Digest(58889256, md5="6d6bbae143d832006294945121d1f1fc", copy="Keras's file"),
         Digest(58888648, "3f4856fe8e56ce99ba9705245bcc662f8eecd26f68b30251878d004d559b2891",
                "b49966276291a476b4c8f1e8fa0a8fcd",
                copy="the staged rebuild of weights/SOURCE.md: same tensors, another container")),
    19: (Digest(80134624, md5="253f8cb515780f3b799900260a226db6", copy="Keras's file"),),
}


def _weight_sources() -> list[Source]:
  out = []
  for depth, digests in VGG_NOTOP_DIGESTS.items():
    name = VGG_NOTOP.format(depth=depth)
    out.append(Source(f"weights/{name}", f"vgg{depth}", digests,
                      (KERAS_WEIGHTS_URL.format(depth=depth) + name, FCHOLLET_WEIGHTS_URL + name),
                      VGG_LICENCE, VGG_CITATION))
  return out


# ----------------------------------------------------------------------------- cats/dogs

CATS_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
# Google publishes no checksum of the zip: its size gates the download, and its 3,000 members are
# checked against cats_and_dogs/originals.sha256 (SOURCE.md), whose canonical (path-sorted)
# listing hashes to this.
CATS_DOGS_ORIGINALS_SHA256 = "7ecc68776f753fca008de8ee9d57ff4ad6d0550ec8c964be4c5090b0b5fb57fd"
CATS_DOGS = Source(
    "cats_and_dogs/cats_and_dogs_filtered.zip", "cats_and_dogs",
    (Digest(68606236, copy="no published checksum: the members are verified"),),
    (CATS_DOGS_URL, CATS_DOGS_URL.replace("https://", "http://")),
    CATS_DOGS_LICENCE, CATS_DOGS_CITATION,
    Archive(into="cats_and_dogs", strip="cats_and_dogs_filtered/",
            include=r"(train|validation)/(cats|dogs)/[^/]+\.jpg", manifest="originals.sha256",
            manifest_sha256=CATS_DOGS_ORIGINALS_SHA256,
            listings=("resized.sha256", "originals.sha256")))

# -------------------------------------------------------------------------------- registry

SOURCES: dict[str, Source] = {
    s.path: s for s in [*_idx_sources(), CIFAR10, ANNA, *_style_sources(), *_weight_sources(),
                        CATS_DOGS]}

# What each study reads by default (experiments/*.py), as data sets or single paths.
STUDIES: dict[str, tuple[str, ...]] = {
    **{s: ("mnist",) for s in ("mnist_mlp", "mnist_dense", "mnist_cnn", "scratch_nn",
                               "scratch_cnn")},
    "fashion_mlp": ("fashion_mnist",),
    "cifar10_cnn": ("cifar10",),
    "cifar10_fast": ("cifar10",),
    "cats_dogs": ("cats_and_dogs", "vgg16"),
    "char_lstm": ("anna",),
    "style_transfer": ("style/tubingen.jpg", "style/starry_night.jpg", "vgg16"),
}


def datasets() -> list[str]:
  """Every data set name, in registry order."""
  return list(dict.fromkeys(s.dataset for s in SOURCES.values()))


def get(path: str) -> Source:
  """The source registered at ``path`` (relative to a data root); KeyError names the known ones."""
  try:
    return SOURCES[path]
  except KeyError:
    raise KeyError(f"No registered source {path!r}; known: {sorted(SOURCES)}.") from None


def resolve(name: str) -> list[Source]:
  """A study, data set or registered path -> its sources (ValueError lists what is known)."""
  if name in STUDIES:
    return list({s.path: s for part in STUDIES[name] for s in resolve(part)}.values())
  if name in SOURCES:
    return [SOURCES[name]]
  found = [s for s in SOURCES.values() if s.dataset == name]
  if not found:
    raise ValueError(f"Unknown name {name!r}: give a study ({', '.join(STUDIES)}), a data set "
                     f"({', '.join(datasets())}) or a path such as "
                     "mnist/t10k-labels-idx1-ubyte.gz.")
  return found
