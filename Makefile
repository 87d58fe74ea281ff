# The README's two commands; each does its own set-up (scripts/setup.sh) first.
#   make run                      set up, then train the bundled Multi30k translator (15 min)
#   make test                     set up everything the tests need, then run them (what CI runs)
#   make test ARGS="-m slow"      arguments for pytest (for run: for attentive train)
#   make setup                    only the set-up, with the test dependencies
ARGS ?=

.PHONY: run test setup

run:
	bash scripts/run.sh $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

setup:
	bash scripts/setup.sh --extras test --weights --espeak --chromium
