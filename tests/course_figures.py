"""distilgpt2's figures for the course's phrases, as the course published them.

One source for the `hub` tests (which check them against the real distilgpt2 when it is
cached or downloadable) and for the test that the notebook's written "expected" figures
are these (`test_notebooks.py`), so that the text students compare with cannot drift.
"""

PHRASE = "This weekend I plan to"
PARAMETERS = 81_912_576
VOCABULARY = 50_257
INPUT_IDS = [770, 5041, 314, 1410, 284]
TOKENS = [" This", " weekend", " I", " plan", " to"]
LOGITS_SHAPE = (1, 5, 50_257)
ARGMAX_ID = 467
ARGMAX_TOKEN = " go"

# the top 5 next tokens and their probabilities, to 1e-6, for the notebook's three phrases
TOP5 = {
    "This weekend I plan to": [
        (" go", 0.059828), (" take", 0.043880), (" spend", 0.031570),
        (" make", 0.030519), (" do", 0.029206),
    ],
    "To be or not to": [
        (" be", 0.648473), (" have", 0.021346), (" the", 0.012962),
        (" do", 0.009471), (",", 0.007444),
    ],
    "For God so loved the": [
        (" world", 0.120081), (" Lord", 0.072237), (" people", 0.050226),
        (" earth", 0.042750), (" children", 0.026753),
    ],
}
ARGMAX_PROBABILITY = TOP5[PHRASE][0][1]
# the notebook's cells that show each phrase's table
TABLE_CELLS = {
    "show_weekend": "This weekend I plan to",
    "show_be": "To be or not to",
    "show_god": "For God so loved the",
}
