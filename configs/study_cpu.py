"""The architecture study on a 2-core CPU: six methods, five paired seeds, one 3-class model per
method and seed (a row in both tables), written to experiments/results/study/.

python -m jaxseg.reproduce --config configs/study_cpu.py --targets cell --seeds 5 \
  --out experiments/results/study

Native resolution rather than the paper's whole-image resize: images scaled by 0.35 (1130 px
to 396 px, where the median test nucleus covers over 100 pixels), trained on random 128 px
crops, evaluated whole by 416 px sliding windows (one window and its mirrored margin per
image) against the masks at that scale. A cosine learning-rate decay after two warm-up epochs
brings each run to rest by its last epoch. Generator version 3 of the synthetic set; a split
stratified by kind; random encoder weights, written down rather than depending on whether
converted ImageNet weights are in the cache.
"""

from jaxseg.configs import quick


def get_config():
  return quick.get_config().replace(
    synthetic_version=3, scale=0.35, image_size=128, window_size=416, epochs=30,
    lr_schedule="cosine", warmup_epochs=2, weights="none")
