"""Self-supervised hand-pose pretraining for the pose encoder's hand ST-GCN (SignBERT-style stand-in).

SEDS initialises its hand ST-GCN from SignBERT (Hu et al., ICCV 2021; +7.5 R@1 pose-only, SEDS supp.
Tab. 3). Those weights are not obtainable here, so this module pretrains the *same* hand ST-GCN
(``seds.model.stgcn.STGCN`` on the 21-point hand graph, widths of the chosen model preset) by masked
hand-pose modelling on unlabeled keypoint sequences, in the spirit of SignBERT:

* **Data**: hand sequences (both hands, the left mirrored — exactly what the pose encoder sees after
  ``seds.keypoints.normalize_parts``) from feature stores (e.g. the synthetic benchmark's train split)
  and from real video folders through MediaPipe (:func:`extract_pose_folder`, e.g. How2Sign clips).
* **Masking** (:func:`mask_hands`): whole-hand frame masking in short runs (SignBERT's frame/clip
  masking) and random joint masking inside the remaining frames. A masked joint looks exactly like a
  detector miss (x = y = confidence = 0), so nothing new is introduced at fine-tuning time.
* **Model** (:class:`HandMAE`): the hand ST-GCN's last-layer per-joint features (the pose encoder
  averages exactly these over joints; its temporal convolutions see ±16 frames) and a light per-joint
  MLP decoder regress the 21 (x, y) coordinates. The loss is the mean L2 error over masked joints that
  were actually observed.
* **Evaluation** (:func:`evaluate_reconstruction`): masked-joint L2 error on held-out real clips
  against trivial baselines — per-joint linear interpolation in time, last-observation copy, and the
  training mean hand.
* **Use**: the encoder is saved as safetensors (``hand_stgcn.safetensors``) with its widths;
  :func:`load_pretrained_hands` copies it into ``SEDS.pose_encoder.hand`` (checking every key and shape).
  :func:`load_signbert` reads a user's SignBERT checkpoint from a local path (``torch.load`` with
  ``weights_only=True`` or safetensors) and maps its GCN keys with an explicit table.

CLI::

    python -m seds.experiments.pretrain_hands extract --videos ../shared/data/how2sign-mini --out runs/pose-h2s-mini --fps 8
    python -m seds.experiments.pretrain_hands train --real runs/pose-h2s-mini --store runs/ablation-store-t24 \\
        --preset ablation --out runs/hands-ablation [--steps 3000]
    python -m seds.experiments.pretrain_hands evaluate --model runs/hands-ablation --real runs/pose-h2s-mini
    python -m seds.experiments.pretrain_hands signbert --checkpoint signbert.pth --preset paper --out runs/hands-signbert
"""
from seds.experiments.pretrain_hands.data import (extract_pose_folder, hand_sequences, real_split,  # noqa: F401
                                                  sequences_from_rows, sequences_from_store)
from seds.experiments.pretrain_hands.model import (HandMAE, MaskConfig, PretrainConfig, apply_mask,  # noqa: F401
                                                   batch_windows, evaluate_reconstruction, interpolate_baseline,
                                                   joint_features, last_copy_baseline, load_hand_mae, mask_hands,
                                                   masked_l2, mean_hand, pretrain)
from seds.model.hand_init import (FORMAT, INFO, WEIGHTS, PretrainError, hand_stgcn, load_hand_state,  # noqa: F401
                                  load_into_stgcn, load_pretrained_hands, load_signbert, map_signbert_state,
                                  read_checkpoint, save_hand_encoder, weights_path)
