# convnet.c build.
#   make            library, apps and bench programs (gpu/ compiled with nvcc when found)
#   make test       build and run every Check suite (CPU ops, grad checks, GPU kernels
#                   under the CUDA-on-CPU emulator, data, model, checkpoints)
#   make asan       the same tests under AddressSanitizer + UBSan (SANITIZE=1)
#   make fuzz       libFuzzer on every file and flag parser, FUZZ_SECONDS (60) each (clang)
#   make run        the main job: find or download CIFAR-10, train apps/resnet
#   make data       download the official CIFAR-10 binary archive into ./data
#   make practical  Parts 1-3 of the practical and saved_models/practical2/REPORT.md
#   make bench      kernel and end-to-end benchmarks vs PyTorch, appended to bench/RESULTS.md
#   make bench-torch-venv  PyPI torch in its own venv, the second baseline of make bench
# V=1 prints every command in full; by default one short line per target (CC core/model.c)
V ?= 0
ifeq ($(V),1)
  Q =
  say =
else
  Q = @
  say = @printf '  %-7s %s\n' '$(1)' '$(2)'
endif
CC      ?= gcc
CXX     ?= g++
OPT     ?= -O2
# WERROR=0 keeps warnings as warnings (bench/gpu_check.sh on a machine whose compilers may be
# newer than ours: one new warning must not stop every later step)
WERROR  ?= 1
ifeq ($(WERROR),1)
  WERR = -Werror
  NVWERR = ,-Werror -Werror all-warnings
endif
# -ffp-contract=off: a product and a sum stay two roundings in C (gcc's ISO mode default, said
# for every compiler): the fast CPU kernels recompute a batchnorm+ReLU value in intrinsics as
# the C code made it, mul then add (cpu/fast/conv2d_direct_kern.h)
CFLAGS_BASE = -std=c11 $(OPT) -g -Wall -Wextra $(WERR) -ffp-contract=off -fopenmp -D_DEFAULT_SOURCE -I.
LDLIBS  = -fopenmp -lpthread -lm
ifeq ($(SANITIZE),1)
  SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  BUILD ?= build-asan
else
  BUILD ?= build
endif
CFLAGS  = $(CFLAGS_BASE) $(SANFLAGS) $(EXTRA_CFLAGS)

# ---- CUDA: compiled whenever nvcc exists; CUDA_ARCH selects the real target (PTX for
# newer cards is embedded too, so the binary JITs on anything >= CUDA_ARCH). ----
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_ARCH ?= 90
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
NVCCFLAGS = -std=c++17 $(OPT) -I. -DCONVNET_CUDA_ARCH=$(CUDA_ARCH) -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) \
            -gencode arch=compute_$(CUDA_ARCH),code=compute_$(CUDA_ARCH) \
            -Xcompiler -Wall,-Wextra$(NVWERR)

CORE_SRC = $(wildcard core/*.c)
CORE_SRC := $(filter-out core/ops_gpu_none.c core/dist_mpi.c,$(CORE_SRC))
CPU_SRC  = $(wildcard cpu/*.c)
FAST_SRC = $(wildcard cpu/fast/*.c)
GPU_SRC  = $(wildcard gpu/*.cu)
APPS     = apps/resnet apps/rotation apps/shuffle
APPS    := $(foreach a,$(APPS),$(if $(wildcard $(a).c),$(a)))
# Data-parallel training over MPI (core/dist.h) where mpicc exists: apps/resnet-mpi
MPICC ?= $(shell command -v mpicc 2>/dev/null)
MPI_APPS = $(if $(MPICC),apps/resnet-mpi)
BENCHES  = $(patsubst %.c,%,$(filter-out bench/bench_util.c,$(wildcard bench/*.c)))
# bench/gemm compares against OpenBLAS (Debian libopenblas-dev); skipped where it is absent.
# OpenBLAS's own cblas.h (a plain cblas.h may be the reference BLAS's, without openblas_*).
OPENBLAS_H := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h \
                /usr/include/x86_64-linux-gnu/openblas-openmp/cblas.h /usr/include/x86_64-linux-gnu/openblas-serial/cblas.h \
                /usr/include/openblas/cblas.h))
ifeq ($(OPENBLAS_H),)
  BENCHES := $(filter-out bench/gemm,$(BENCHES))
endif
bench/gemm: BENCH_LIBS = -lopenblas
bench/gemm: CFLAGS += -I$(dir $(OPENBLAS_H))
# bench/gpu_bench needs the CUDA headers and runtime; only built when nvcc exists.
ifeq ($(NVCC),)
  BENCHES := $(filter-out bench/gpu_bench,$(BENCHES))
endif
bench/gpu_bench: CFLAGS += -I$(CUDA_HOME)/include
bench/gpu_bench: BENCH_LIBS = -ldl

OBJ_CORE = $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRC) $(CPU_SRC) $(FAST_SRC))
ifneq ($(NVCC),)
  OBJ_GPU   = $(patsubst %.cu,$(BUILD)/cuda/%.o,$(GPU_SRC))
  GPU_LIBS  = -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
else
  OBJ_GPU   = $(BUILD)/core/ops_gpu_none.o
  GPU_LIBS  =
endif
LIB = $(BUILD)/libconvnet.a

# Tests: the CPU operators again with real = double (gradient checks), and gpu/*.cu compiled
# by g++ against the CUDA-on-CPU emulator in tests/emu/.
OBJ_F64  = $(patsubst %.c,$(BUILD)/f64/%.o,$(CPU_SRC))
OBJ_EMU  = $(patsubst %.cu,$(BUILD)/emu/%.o,$(GPU_SRC)) $(BUILD)/emu/planted_gemm.o $(BUILD)/emu/planted_bn.o
EMU_SRC  = $(wildcard tests/emu/*.cc)
OBJ_EMUC = $(patsubst %.cc,$(BUILD)/%.o,$(EMU_SRC))
TEST_SRC = $(wildcard tests/test_*.c)
FUZZ_TARGETS = safetensors state cifar permutation cli
FUZZ_SRC = $(foreach t,$(FUZZ_TARGETS),tests/fuzz/fuzz_$(t).c) tests/fuzz/fuzz_seeds.c
OBJ_TEST = $(patsubst %.c,$(BUILD)/%.o,$(TEST_SRC) $(FUZZ_SRC) tests/check_main.c tests/gradcheck.c tests/fixtures.c)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)
EMU_CXXFLAGS = -std=c++17 $(OPT) -g -Wall -Wextra $(WERR) -I. -Itests/emu -fopenmp $(SANFLAGS) \
               -Wno-unused-parameter -Wno-unknown-pragmas

.PHONY: test-mpi all test test-run asan run run-now data bench bench-torch-venv clean practical gpu-test gpu-bundle fuzz fuzz-bins
all: $(LIB) $(APPS) $(MPI_APPS) $(BENCHES) $(OBJ_GPU)

$(BUILD)/%.o: %.c $(wildcard core/*.h cpu/*.h cpu/fast/*.h tests/*.h tests/*.def tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/f64/%.o: %.c $(wildcard core/*.h cpu/*.h) tests/f64_names.h
	@mkdir -p $(dir $@)
	$(call say,CC64,$<)
	$(Q)$(CC) $(CFLAGS) -DCONVNET_REAL_DOUBLE -include tests/f64_names.h -c $< -o $@

$(BUILD)/cuda/%.o: %.cu $(wildcard gpu/*.h gpu/*.cuh core/*.h)
	@mkdir -p $(dir $@)
	$(call say,NVCC,$<)
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/emu/%.o: %.cu $(wildcard gpu/*.h gpu/*.cuh core/*.h tests/emu/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXXEMU,$<)
	$(Q)$(CXX) $(EMU_CXXFLAGS) -DCONVNET_EMU -x c++ -c $< -o $@

# The tiled GEMM once more with its second barrier removed: tests show the emulator catches it.
$(BUILD)/emu/planted_gemm.o: gpu/gemm.cu $(wildcard gpu/*.h gpu/*.cuh tests/emu/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXXEMU,$@)
	$(Q)$(CXX) $(EMU_CXXFLAGS) -DCONVNET_EMU -DGPU_NS=gpu_planted -DPLANT_MISSING_BARRIER -x c++ -c $< -o $@

# The split batchnorm with the first barrier of its block sum removed, likewise.
$(BUILD)/emu/planted_bn.o: gpu/batchnorm_split.cu $(wildcard gpu/*.h gpu/*.cuh tests/emu/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXXEMU,$@)
	$(Q)$(CXX) $(EMU_CXXFLAGS) -DCONVNET_EMU -DGPU_NS=gpu_planted -DPLANT_MISSING_BARRIER -x c++ -c $< -o $@

$(BUILD)/tests/emu/%.o: tests/emu/%.cc $(wildcard tests/emu/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXX,$<)
	$(Q)$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(LIB): $(OBJ_CORE)
	@mkdir -p $(dir $@)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

apps/%: apps/%.c $(LIB) $(OBJ_GPU)
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) $< $(OBJ_GPU) $(LIB) $(GPU_LIBS) $(LDLIBS) -o $@

bench/%: bench/%.c bench/bench_util.c bench/bench.h $(LIB) $(OBJ_GPU)
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) $< bench/bench_util.c $(OBJ_GPU) $(LIB) $(GPU_LIBS) $(BENCH_LIBS) $(LDLIBS) -o $@

# bench/gpu_plan: the GPU table on the emulator in trace-only mode (no GPU needed)
bench/gpu_plan: bench/gpu_plan.c $(patsubst %.cu,$(BUILD)/emu/%.o,$(GPU_SRC)) $(OBJ_EMUC) $(LIB)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c $< -o $(BUILD)/gpu_plan.o
	$(call say,LD,$@)
	$(Q)$(CXX) $(SANFLAGS) $(BUILD)/gpu_plan.o $(patsubst %.cu,$(BUILD)/emu/%.o,$(GPU_SRC)) $(OBJ_EMUC) $(LIB) $(LDLIBS) -o $@

$(BUILD)/run_tests: $(OBJ_TEST) $(OBJ_F64) $(OBJ_EMU) $(OBJ_EMUC) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CXX) $(SANFLAGS) $^ $(CHECK_LIBS) $(LDLIBS) -o $@

# the CLI fuzz target compiles the apps' sources in
$(BUILD)/tests/fuzz/fuzz_cli.o: $(wildcard apps/*.c)

# The GPU suite once more on the emulator built the way nvcc builds: g++ fusing products and
# sums into FMAs wherever it can (-ffp-contract=fast -mfma), so a kernel whose result depends
# on where they are fused fails here as on a card (the rotation's 45-degree near-ties did,
# on an H200 first). make test runs it where the CPU has FMA (not under make asan).
EMU_FMA_FLAGS = -ffp-contract=fast -mfma
OBJ_EMU_FMA = $(patsubst %.cu,$(BUILD)/emu-fma/%.o,$(GPU_SRC))
$(BUILD)/emu-fma/%.o: %.cu $(wildcard gpu/*.h gpu/*.cuh core/*.h tests/emu/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXXFMA,$<)
	$(Q)$(CXX) $(EMU_CXXFLAGS) $(EMU_FMA_FLAGS) -DCONVNET_EMU -x c++ -c $< -o $@
$(BUILD)/emu-fma/test_gpu.o: tests/test_gpu.c $(wildcard core/*.h cpu/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -DCONVNET_EMU_FMA -c $< -o $@
$(BUILD)/gpu_tests_emu_fma: $(BUILD)/emu-fma/test_gpu.o $(BUILD)/tests/gpu_main.o $(BUILD)/tests/gradcheck.o \
                            $(BUILD)/tests/fixtures.o $(OBJ_EMU_FMA) $(BUILD)/emu/planted_gemm.o $(BUILD)/emu/planted_bn.o \
                            $(OBJ_EMUC) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CXX) $(SANFLAGS) $^ $(CHECK_LIBS) $(LDLIBS) -o $@
RUN_EMU_FMA := $(if $(SANITIZE),,$(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo 1))

# Data-parallel training over MPI (core/dist.h): where mpicc exists (Open MPI or MPICH),
# core/dist_mpi.c and the test that trains a few steps with 1, 2 and 3 processes
# (tests/mpi/run.sh, run by make test; not under make asan, where Open MPI's own allocations
# would be reported).
MPICXX ?= $(shell command -v mpicxx 2>/dev/null)
RUN_MPI := $(if $(SANITIZE),,$(if $(MPICXX),$(MPICC)))
$(BUILD)/mpi/dist_mpi.o: core/dist_mpi.c core/dist.h core/ops.h cpu/cpu.h
	@mkdir -p $(dir $@)
	$(call say,MPICC,$<)
	$(Q)$(MPICC) $(CFLAGS) -c $< -o $@
# On GPUs, one per process, the sums go through NCCL (gpu/dist.cu): compiled with it for the
# MPI apps where NCCL's header and library are found (CUDA's own directories, or Debian's
# libnccl-dev); every other program has gpu/dist.cu without it (one process).
# NCCL_HOME=DIR: a folder with include/nccl.h and lib/libnccl.so* (the nvidia-nccl-cu12 wheel's
# site-packages/nvidia/nccl, which has only libnccl.so.2: linked by its path).
NCCL_H   := $(if $(NVCC),$(firstword $(wildcard $(if $(NCCL_HOME),$(NCCL_HOME)/include/nccl.h) \
                $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h)))
NCCL_LIB := $(if $(NCCL_H),$(firstword $(wildcard $(if $(NCCL_HOME),$(NCCL_HOME)/lib/libnccl.so $(NCCL_HOME)/lib/libnccl.so.2) \
                $(CUDA_HOME)/lib64/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so)))
ifneq ($(NCCL_LIB),)
  OBJ_GPU_MPI = $(filter-out $(BUILD)/cuda/gpu/dist.o,$(OBJ_GPU)) $(BUILD)/cuda-nccl/gpu/dist.o
  NCCL_LIBS   = $(NCCL_LIB) -Wl,-rpath,$(dir $(NCCL_LIB))
else
  OBJ_GPU_MPI = $(OBJ_GPU)
endif
$(BUILD)/cuda-nccl/gpu/dist.o: gpu/dist.cu $(wildcard gpu/*.h gpu/*.cuh core/*.h)
	@mkdir -p $(dir $@)
	$(call say,NVCC,$< (NCCL))
	$(Q)$(NVCC) $(NVCCFLAGS) -DCONVNET_NCCL -I$(dir $(NCCL_H)) -c $< -o $@
# apps/resnet-mpi: apps/resnet with core/dist_mpi.c (mpirun -np N apps/resnet-mpi ...)
apps/%-mpi: apps/%.c $(BUILD)/mpi/dist_mpi.o $(LIB) $(OBJ_GPU_MPI)
	$(call say,LD,$@)
	$(Q)$(MPICC) $(CFLAGS) $< $(BUILD)/mpi/dist_mpi.o $(OBJ_GPU_MPI) $(LIB) $(GPU_LIBS) $(NCCL_LIBS) $(LDLIBS) -o $@
# tests/mpi/steps.c: a few steps on the CPU or on the emulator's GPU, one emulated device a
# process, gpu/dist.cu with NCCL emulated over MPI (tests/emu/nccl)
OBJ_EMU_NCCL = $(filter-out $(BUILD)/emu/gpu/dist.o,$(patsubst %.cu,$(BUILD)/emu/%.o,$(GPU_SRC))) \
               $(BUILD)/emu-nccl/gpu/dist.o $(BUILD)/emu-nccl/nccl_emu.o $(OBJ_EMUC)
$(BUILD)/emu-nccl/gpu/dist.o: gpu/dist.cu $(wildcard gpu/*.h gpu/*.cuh core/*.h tests/emu/*.h tests/emu/nccl/*.h)
	@mkdir -p $(dir $@)
	$(call say,CXXEMU,$< (NCCL))
	$(Q)$(CXX) $(EMU_CXXFLAGS) -DCONVNET_EMU -DCONVNET_NCCL -x c++ -c $< -o $@
$(BUILD)/emu-nccl/nccl_emu.o: tests/emu/nccl/nccl_emu.cc $(wildcard tests/emu/*.h tests/emu/nccl/*.h)
	@mkdir -p $(dir $@)
	$(call say,MPICXX,$<)
	$(Q)$(MPICXX) $(EMU_CXXFLAGS) -c $< -o $@
$(BUILD)/mpi_steps: tests/mpi/steps.c $(BUILD)/mpi/dist_mpi.o $(LIB) $(OBJ_EMU_NCCL)
	$(call say,LD,$@)
	$(Q)$(MPICC) $(CFLAGS) -c $< -o $(BUILD)/mpi/steps.o
	$(Q)$(MPICXX) $(BUILD)/mpi/steps.o $(BUILD)/mpi/dist_mpi.o $(OBJ_EMU_NCCL) $(LIB) $(LDLIBS) -o $@
test-mpi: $(BUILD)/mpi_steps $(MPI_APPS)
	bash tests/mpi/run.sh $(BUILD)/mpi_steps

# `make test` also compiles gpu/ with nvcc (when present) so CUDA compile errors fail it.
# tools/need.sh first installs (as root) or names (otherwise) the missing system packages.
test:
	@bash tools/need.sh test
	@$(MAKE) --no-print-directory test-run
test-run: $(BUILD)/run_tests $(OBJ_GPU) $(if $(RUN_EMU_FMA),$(BUILD)/gpu_tests_emu_fma) $(if $(RUN_MPI),$(BUILD)/mpi_steps $(MPI_APPS))
	cd $(CURDIR) && $(BUILD)/run_tests
	$(if $(RUN_EMU_FMA),cd $(CURDIR) && CK_FORK=yes CK_LOG_FILE_NAME=/dev/null $(BUILD)/gpu_tests_emu_fma)
	$(if $(RUN_MPI),cd $(CURDIR) && bash tests/mpi/run.sh $(BUILD)/mpi_steps,@echo "MPI tests: not run ($(if $(SANITIZE),under the sanitizers,no mpicc: tools/need.sh test installs Open MPI as root))")

# The GPU-vs-CPU tests on a real GPU (needs nvcc and a device): build/gpu_tests.
$(BUILD)/real/test_gpu.o: tests/test_gpu.c $(wildcard core/*.h cpu/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -DCONVNET_REAL_GPU -c $< -o $@
# Linked so that it needs only glibc on the card's machine: Check, subunit, libgomp, libstdc++
# and libgcc statically (bench/gpu_check.sh --dry-run checks its ldd).
$(BUILD)/gpu_tests: $(BUILD)/real/test_gpu.o $(BUILD)/tests/gpu_main.o $(BUILD)/tests/gradcheck.o $(BUILD)/tests/fixtures.o $(OBJ_GPU) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CC) $(filter-out -fopenmp,$(CFLAGS)) $^ -L$(CUDA_HOME)/lib64 -lcudart_static -static-libstdc++ -static-libgcc \
	  -Wl,-Bstatic -lcheck_pic -lsubunit -lgomp -lstdc++ -Wl,-Bdynamic -ldl -lrt -lpthread -lm -o $@
gpu-test: $(BUILD)/gpu_tests
	$(BUILD)/gpu_tests

# What a lent GPU machine (nvcc, no Check library) needs from here: the GPU tests with Check
# linked statically, carried as build-device/ (bench/gpu_check.sh --dry-run checks its size).
gpu-bundle: $(BUILD)/gpu_tests
	@mkdir -p build-device
	cp $(BUILD)/gpu_tests build-device/gpu_tests
	@echo "build-device/gpu_tests: $$(du -k build-device/gpu_tests | cut -f1) KiB (CUDA_ARCH=$(CUDA_ARCH))"

asan:
	$(MAKE) SANITIZE=1 test

# ---- fuzzing with clang's libFuzzer (tests/fuzz/README.md): every target FUZZ_SECONDS each
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
              -Wno-pass-failed -Wno-unknown-attributes
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_seeds.c tests/fuzz/fuzz.h $(LIB) $(BUILD)/core/ops_gpu_none.o
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) -DCONVNET_LIBFUZZER -fsanitize=fuzzer $< tests/fuzz/fuzz_seeds.c $(BUILD)/core/ops_gpu_none.o $(LIB) $(LDLIBS) -o $@
$(BUILD)/fuzz/seeds: tests/fuzz/fuzz_main_seeds.c tests/fuzz/fuzz_seeds.c tests/fuzz/fuzz.h $(LIB) $(BUILD)/core/ops_gpu_none.o
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(CFLAGS) $< tests/fuzz/fuzz_seeds.c $(BUILD)/core/ops_gpu_none.o $(LIB) $(LDLIBS) -o $@
$(BUILD)/fuzz/fuzz_cli: $(wildcard apps/*.c)
# no parser lives in the fast kernels: built plain there, they link in minutes less
ifeq ($(FUZZ_BUILD),1)
$(BUILD)/cpu/fast/%.o: override EXTRA_CFLAGS = -Wno-unknown-attributes
endif
fuzz-bins: $(foreach t,$(FUZZ_TARGETS),$(BUILD)/fuzz/fuzz_$(t)) $(BUILD)/fuzz/seeds
fuzz:
	@bash tools/need.sh fuzz
	$(Q)$(MAKE) --no-print-directory -j$(shell nproc) CC=clang BUILD=build-fuzz FUZZ_BUILD=1 NVCC= SANFLAGS= EXTRA_CFLAGS="$(FUZZ_CFLAGS)" fuzz-bins
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh build-fuzz $(FUZZ_TARGETS)

DATA_DIR ?= data/cifar-10-batches-bin
CIFAR_URL = https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz
CIFAR_MD5 = c32a1d4ab5d03f1284b67883e8d87530
data:
	@if [ -f $(DATA_DIR)/data_batch_1.bin ] && [ -f $(DATA_DIR)/test_batch.bin ]; then \
	  echo "CIFAR-10 already present in $(DATA_DIR)"; exit 0; fi; \
	mkdir -p data && \
	{ curl -fsSL --retry 2 -o data/cifar-10-binary.tar.gz.part $(CIFAR_URL) || \
	  { echo "make data: could not download $(CIFAR_URL) (no network?); set CIFAR10_DIR or pass --data DIR" >&2; \
	    rm -f data/cifar-10-binary.tar.gz.part; exit 1; }; } && \
	if [ "$$(md5sum data/cifar-10-binary.tar.gz.part | cut -d' ' -f1)" != "$(CIFAR_MD5)" ]; then \
	  echo "make data: md5 mismatch for the downloaded archive (expected $(CIFAR_MD5))" >&2; \
	  rm -f data/cifar-10-binary.tar.gz.part; exit 1; fi && \
	mv data/cifar-10-binary.tar.gz.part data/cifar-10-binary.tar.gz && \
	tar -xzf data/cifar-10-binary.tar.gz -C data && echo "CIFAR-10 extracted to $(DATA_DIR)"

# The main job: train the practical's ResNet (data from CIFAR10_DIR, else ./data, downloaded
# when missing). Extra flags: make run ARGS="--epochs 30 --milestones 21,27".
run:
	@bash tools/need.sh run
	@$(MAKE) --no-print-directory run-now
run-now: all
	@if [ -z "$$CIFAR10_DIR" ]; then $(MAKE) --no-print-directory data || exit 1; fi
	apps/resnet $(ARGS)

bench: all
	bash bench/run.sh

# The PyPI torch baseline's virtual environment (bench only; several GB): make bench uses it when present.
bench-torch-venv:
	bash bench/torch_venv.sh --create

# Parts 1-3 and REPORT.md (see apps/practical.sh for the knobs).
practical: all
	apps/practical.sh

clean:
	rm -rf build build-asan build-device build-fuzz $(APPS) $(BENCHES)
