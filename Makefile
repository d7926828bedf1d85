# Two entry points (see README): `make demo` and `make test`. Both create .venv and install the project.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/parsing_tiny

$(BIN)/jhuman: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(BIN)/jhuman

# Train a tiny DeepLab on the built-in synthetic people, evaluate it (LIP protocol), write pictures,
# then predict a folder of images with the trained model.
demo: $(BIN)/jhuman
	$(BIN)/jhuman train --config configs/parsing.py:size=tiny,data=synthetic --workdir $(WORKDIR)
	$(BIN)/jhuman data synth --task parsing --out $(WORKDIR)/new_people --num 10 --seed 123 --size 96,128
	$(BIN)/jhuman predict --workdir $(WORKDIR) --images $(WORKDIR)/new_people/TrainVal_images/train_images \
	  --out $(WORKDIR)/predict
	@echo "pictures: $(WORKDIR)/pictures/ and $(WORKDIR)/predict/"

test: $(BIN)/jhuman
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q tests

# The opt-in test CI has no time for (7.5 minutes on 2 CPU cores): the pose-guided generator trained by the tiny
# config beats copying the source (tests/acceptance).
acceptance: $(BIN)/jhuman
	JHUMAN_ACCEPTANCE=1 $(BIN)/python -m pytest -q tests/acceptance

# One formatter and linter for the whole tree (configured in pyproject.toml); CI fails on either.
lint: $(BIN)/jhuman
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

.PHONY: install demo test acceptance lint
