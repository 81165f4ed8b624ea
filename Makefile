# The two commands of the README:  `make run` (the viewer)  and  `make test` (the whole suite).
.PHONY: run test setup lint bench

setup:
	@bash packaging/setup.sh

run: setup
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then .venv/bin/hounsfield $(ARGS); \
	else echo "run: no display found, starting the viewer on a virtual X server (xvfb-run)"; \
	xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/hounsfield $(ARGS); fi

lint: setup
	.venv/bin/ruff check viewer plugins tests

test: setup lint
	xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; xvfb-run -a .venv/bin/python $$b || exit 1; done
