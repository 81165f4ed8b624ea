"""Ask the reader whether an image file without a modality (NIfTI, NRRD, MHA) is CT or MR, when a plugin
that takes only CT or MR is about to run on it (the AI menu, Click to segment); the answer holds for the
series while it is open."""

from __future__ import annotations

import logging
import os

from PySide6.QtWidgets import QMessageBox

from viewer.ai.modality import assume_modality, modality_choices

log = logging.getLogger("hounsfield")


def settle_modality(window, state, info) -> bool:
    """True when plugin ``info`` may run on ``state``'s series: it says its modality, or the reader has
    said which it is now; False (with a status message) when the reader cancelled."""
    if info is None or state is None or state.volume is None:
        return True
    choices = modality_choices(state.volume, info)
    if not choices:
        return True
    vol = state.volume
    name = os.path.basename(vol.source.path.rstrip("/")) if vol.source.path else "This image"
    question = (f"{name} does not say whether it is {' or '.join(choices)}. Which is it?" if len(choices) > 1
                else f"{name} does not say that it is {choices[0]}. Is it?")
    box = QMessageBox(QMessageBox.Icon.Question, info.name, question, parent=window)
    box.setObjectName("modality_question")
    box.setInformativeText(f"{info.name} takes {'/'.join(choices)} images; the answer holds for this series "
                           "while it is open.")
    buttons = {m: box.addButton(m, QMessageBox.ButtonRole.AcceptRole) for m in choices}
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(buttons[choices[0]])
    box.exec()
    window.activateWindow()  # the keys go back to the views (Enter accepts a click's mask)
    chosen = next((m for m, b in buttons.items() if box.clickedButton() is b), None)
    if chosen is None:
        window.statusBar().showMessage(f"{info.name} did not run: the image's modality was not given.", 8000)
        return False
    assume_modality(vol, chosen)
    log.info("%s: the reader said it is %s", vol.source.path or state.key, chosen)
    window.statusBar().showMessage(f"{name} is read as {chosen} while it is open.", 8000)
    return True
