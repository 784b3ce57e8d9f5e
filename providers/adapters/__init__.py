"""One module per provider kind; `registry` is the only list of them."""
