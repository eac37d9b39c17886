# Front door. `make` builds; `make test` installs what is missing, builds, runs every
# test (release build, then the same suite under ASan+UBSan); `make serve` runs the
# main job on the bundled example model.
SHELL := /bin/bash
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
PY := /usr/bin/python3

# Debian packages the build and the tests need.
APT_PACKAGES := cmake gcc clang make pkg-config libprotobuf-c-dev protobuf-c-compiler \
	libclang-rt-14-dev libonnx-testdata python3-numpy python3-onnx python3-torch \
	python3-torchvision libopenblas0-openmp time libssl-dev \
	libmicrohttpd-dev libjansson-dev curl libxgboost-dev \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user

.PHONY: all build cross deps test test-release test-asan serve fuzz bench clean

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The deployable runtime for 64-bit ARM: build-aarch64/inferbooster-run (runs artifacts
# from `inferbooster compile --target aarch64`; under qemu-aarch64 -L /usr/aarch64-linux-gnu).
cross:
	@cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
		-DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-aarch64 -j$(JOBS)

# Idempotent: installs only what is missing (needs root on a fresh Debian 12).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

test: deps
	@$(MAKE) --no-print-directory test-release
	@$(MAKE) --no-print-directory test-asan

test-release:
	@$(MAKE) --no-print-directory build BUILD=build CMAKE_FLAGS="-DIB_WERROR=ON"
	@cd build && ctest --output-on-failure -j$(JOBS)

test-asan:
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DIB_SANITIZE=ON -DIB_WERROR=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS) -LE slow

# The example repository (examples/model_repository) on 127.0.0.1:8000 until Ctrl-C.
serve: deps build
	@./$(BUILD)/inferbooster serve --model-repository examples/model_repository \
		--host 127.0.0.1 --http-port 8000

# InferBooster vs ONNX Runtime on the benchmark models (minutes; not part of `make test`).
bench: deps
	@IB_BUILD=$(BUILD) bench/compare.sh

fuzz: deps
	@cmake --preset fuzz >/dev/null && cmake --build build-fuzz -j$(JOBS)

clean:
	rm -rf build build-asan build-debug build-fuzz build-aarch64
