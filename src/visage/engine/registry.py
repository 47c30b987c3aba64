"""The face models Visage ships, in one table: each one's name, version, parts and factory.

Everything that names a face model finds it here: the :class:`~visage.engine.Engine`
builds a model from its entry (once, under its lock), the command lines take their
choices from :data:`MODEL_NAMES`, and a model's version and Similarity map are read
from its entry without loading its network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from visage.engine.recognition import DlibModel, FaceModel, FusionModel, FusionWeight, SFaceCropsModel, SFaceModel
from visage.engine.similarity import SimilarityMap
from visage.errors import InvalidParameterException

#: The part a face model may need besides other face models: dlib's 5-point shape predictor.
FIVE_POINTS = "shape5"


@dataclass(frozen=True)
class FaceModelEntry:
    """One face model: its name, what it is built from, how, and where its version comes from."""

    name: str
    #: What it is built from: other face models by name, or FIVE_POINTS.
    needs: tuple[str, ...]
    #: Builds it from the settings and the loaded parts ``needs`` names, in that order.
    factory: Callable[..., FaceModel]
    #: Its version, read without loading the network (the version every vector it makes is tagged with).
    shipped_version: Callable[[], str]
    #: What it is, in a few words, for the command lines' help.
    summary: str = ""

    @property
    def version(self) -> str:
        return self.shipped_version()

    def similarity_map(self) -> SimilarityMap:
        """The shipped map from this model's cosine to Similarity (``visage/data/similarity/<name>.json``)."""
        return SimilarityMap.load(self.name)


FACE_MODELS: dict[str, FaceModelEntry] = {
    entry.name: entry
    for entry in (
        FaceModelEntry(
            "sface",
            needs=(),
            factory=lambda settings: SFaceModel(settings.model_threads),
            shipped_version=lambda: SFaceModel.version,
            summary="SFace, the default: fast",
        ),
        FaceModelEntry(
            "dlib",
            needs=(FIVE_POINTS,),
            factory=lambda settings, five_points: DlibModel(five_points),
            shipped_version=lambda: DlibModel.version,
            summary="dlib's ResNet",
        ),
        FaceModelEntry(
            "sface-crops",
            needs=("sface",),
            factory=lambda settings, sface: SFaceCropsModel(sface),
            shipped_version=lambda: SFaceCropsModel.version,
            summary="sface on six crops of each face: steadier on turned faces, six times the embedding time",
        ),
        FaceModelEntry(
            "fusion",
            needs=("sface", "dlib"),
            factory=lambda settings, sface, dlib: FusionModel(sface, dlib),
            shipped_version=lambda: FusionWeight.load().version,  # the weight's version (visage/data/fusion.json)
            summary="sface and dlib together, one calibrated score: the most accurate, the slowest",
        ),
    )
}
MODEL_NAMES = tuple(FACE_MODELS)
#: The face models in words, for the command lines' help: "sface (SFace, the default: fast), dlib (...), ...".
MODELS_HELP = "; ".join(f"{entry.name} ({entry.summary})" for entry in FACE_MODELS.values())


def face_model_entry(name: str) -> FaceModelEntry:
    """The entry of face model ``name``, or InvalidParameterException naming the choices."""
    entry = FACE_MODELS.get(name)
    if entry is None:
        raise InvalidParameterException(f"Unknown face model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    return entry
