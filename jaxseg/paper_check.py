"""What the paper's Tables 1 and 2 imply, checked against themselves.

Accuracy, sensitivity and precision of one binary prediction fix its confusion counts up to
the number of pixels: with the target's share P of the pixels (fractions of all pixels),
tp = sens P, fn = (1 - sens) P, fp = tp (1 - prec) / prec, and accuracy = 1 - fn - fp gives
P = (1 - acc) / ((1 - sens) + sens (1 - prec) / prec). From those counts follow the target's
IoU, the background's IoU, their mean, and Dice (which equals F1, 2 prec sens / (prec + sens)).
Set beside the paper's own IoU and Dice columns, they show whether the columns can be pooled
metrics of one prediction.
"""

from __future__ import annotations

# Accuracy, sensitivity, precision, IoU, Dice (%), as the paper prints them.
PAPER_ROWS = {
  "cytoplasm": {
    "unet": (97.03, 78.6, 93.01, 97.03, 84.77),
    "vgg19": (98.64, 93.91, 92.83, 97.9, 80.53),
    "resnet50": (97.43, 82.66, 97.28, 97.89, 87.81),
    "mobilenet": (97.67, 79.75, 96.61, 97.18, 78.52),
    "efficientnetb2": (98.10, 83.36, 99.02, 97.98, 88.93),
    "densenet121": (98.59, 91.68, 94.56, 98.48, 87.5),
  },
  "nuclei": {
    "unet": (99.25, 80.01, 95.10, 99.50, 84.95),
    "vgg19": (99.69, 86.23, 99.76, 99.60, 84.25),
    "resnet50": (99.85, 92.07, 95.72, 99.77, 87.20),
    "mobilenet": (99.78, 91.63, 95.17, 99.71, 90.34),
    "efficientnetb2": (99.86, 97.75, 98.13, 99.80, 89.33),
    "densenet121": (99.82, 87.51, 98.66, 99.76, 88.09),
  },
}


def implied_scores(accuracy: float, sensitivity: float, precision: float) -> dict[str, float]:
  """The scores (%) that one prediction with this accuracy, sensitivity and precision (%)
  has: the target's share of the pixels, its IoU, the background's IoU, their mean, Dice."""
  acc, sens, prec = accuracy / 100, sensitivity / 100, precision / 100
  share = (1 - acc) / ((1 - sens) + sens * (1 - prec) / prec)
  tp, fn = sens * share, (1 - sens) * share
  fp = tp * (1 - prec) / prec
  tn = 1 - tp - fn - fp
  iou, background_iou = tp / (tp + fp + fn), tn / (tn + fp + fn)
  return {"share": 100 * share, "iou": 100 * iou, "background_iou": 100 * background_iou,
          "mean_iou": 100 * (iou + background_iou) / 2, "dice": 100 * 2 * tp / (2 * tp + fp + fn)}


def paper_check(target: str) -> dict[str, dict[str, float]]:
  """Per method of the paper's table of ``target``: its printed IoU and Dice beside the scores
  its accuracy, sensitivity and precision imply (`implied_scores`)."""
  return {method: {"printed_iou": row[3], "printed_dice": row[4], **implied_scores(*row[:3])}
          for method, row in PAPER_ROWS[target].items()}


def paper_note(target: str) -> str:
  """The tables' sentence on the paper's columns, with the ranges computed here."""
  rows = paper_check(target)
  check = rows.values()

  def span(key: str) -> str:
    values = [row[key] for row in check]
    return f"{min(values):.1f}-{max(values):.1f}"

  widest = max(rows, key=lambda method: abs(rows[method]["dice"] - rows[method]["printed_dice"]))

  return (f"The paper's columns cannot all be pooled metrics of one prediction: solving each "
          f"of its {target} rows' accuracy, sensitivity and precision for the confusion counts "
          f"(`jaxseg.paper_check`) gives a mean IoU over target and background of "
          f"{span('mean_iou')} against its printed IoU of {span('printed_iou')} (the "
          f"background's own IoU, {span('background_iou')}, comes closest), and a Dice (= F1) of "
          f"{span('dice')} against its printed Dice of {span('printed_dice')} ({widest}: "
          f"{rows[widest]['dice']:.1f} against {rows[widest]['printed_dice']:.1f}).")
