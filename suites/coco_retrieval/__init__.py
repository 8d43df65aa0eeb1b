"""The ``coco-retrieval`` suite: ``data.py`` the captions files and epoch pairs, ``models.py`` the dual
encoders, ``losses.py`` recall@K and the retrieval losses, ``suite.py`` the suite itself. Importing the
package registers the suite; the names other code uses are importable from here."""

from suites.coco_retrieval.data import CaptionedImages, coco_split_files, epoch_pairs, read_captioned_images
from suites.coco_retrieval.losses import RECALL_KS, contrastive_loss, retrieval_recalls, triplet_loss
from suites.coco_retrieval.models import MODELS, DualEncoderModel
from suites.coco_retrieval.suite import CocoOptions, CocoRetrieval

__all__ = ["MODELS", "RECALL_KS", "CaptionedImages", "CocoOptions", "CocoRetrieval", "DualEncoderModel",
           "coco_split_files", "contrastive_loss", "epoch_pairs", "read_captioned_images", "retrieval_recalls",
           "triplet_loss"]
