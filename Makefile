# sluice — build, test, run and install.
#   make              build/sluice
#   make test         install missing packages, build, run every test against a throwaway PostgreSQL
#                     (make test T=integration/types runs only the matching test files)
#   make asan         the same built with AddressSanitizer + UBSan, in build/asan/
#   make valgrind     the same under valgrind (memcheck), in build/valgrind/
#   make fuzz-smoke   every libFuzzer target for 60 s; make fuzz runs them for FUZZ_SECS (10)
#   make run          serve the example service (local PostgreSQL in .data/ unless DATABASE_URL is set)
#   make lint|format|install|clean|deps|bench|docker|fuzz

SHELL   := /bin/bash
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O2 -g
SAN     ?=
PKGS    := libh2o-evloop luajit jansson libpq
JOBS    := -j$(shell nproc 2>/dev/null || echo 2)

# src/ by layer, lowest first: core, pg, lua, http, api, cli (docs/architecture.md).
SRCDIRS := core pg lua http api cli

# Recursive (=) so that pkg-config runs when a recipe needs it, after `deps` has installed it.
ALL_CFLAGS  = -std=gnu11 $(OPT) $(SAN) -Wall -Wextra -Wno-unused-parameter -DH2O_USE_EPOLL=1 \
              $(addprefix -Isrc/,$(SRCDIRS)) $(shell pkg-config --cflags $(PKGS)) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
LIBS        = $(shell pkg-config --libs $(PKGS)) -lssl -lcrypto -lpthread -lm

OBJS    := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(wildcard $(addsuffix /*.c,$(addprefix src/,$(SRCDIRS)))))
LIBOBJS := $(filter-out $(BUILD)/obj/cli/main.o,$(OBJS))
TESTS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
# Test support code: every tests/unit/*.c that is not a test_*.c (fakepg.c) is linked into each test.
TSUPOBJS := $(patsubst tests/unit/%.c,$(BUILD)/testobj/%.o,$(filter-out tests/unit/test_%.c,$(wildcard tests/unit/*.c)))
FORMAT  := $(wildcard src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h)

ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            SLUICE_BIN=build/asan/sluice UNIT_DIR=build/asan/tests

.PHONY: all tests deps test asan valgrind lint format run install clean bench docker fuzz fuzz-smoke
all: $(BUILD)/sluice
tests: $(TESTS)

$(BUILD)/sluice: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/testobj/%.o: tests/unit/%.c | $(BUILD)/testobj
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) $(TSUPOBJS) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) -MMD -MP $(ALL_LDFLAGS) -o $@ $< $(LIBOBJS) $(TSUPOBJS) $(LIBS) -lcmocka

# Named outside the pattern rule, or make deletes them after each build as intermediate files.
$(TESTS): $(TSUPOBJS)

$(BUILD)/tests $(BUILD)/testobj:
	mkdir -p $@

-include $(OBJS:.o=.d) $(TESTS:=.d) $(TSUPOBJS:.o=.d)

deps:
	@scripts/deps.sh

# The database is started fresh and always stopped, whatever the tests do.
test: deps
	@$(MAKE) --no-print-directory $(JOBS) all tests
	@scripts/promtool.sh
	scripts/testdb.sh run tests/run.sh $(T)

asan: deps
	@$(MAKE) --no-print-directory $(JOBS) BUILD=build/asan OPT="-O1 -g" \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" all tests
	$(ASAN_ENV) FUZZ_SMOKE=0 scripts/testdb.sh run tests/run.sh $(T)

valgrind:
	@scripts/deps.sh valgrind
	tests/valgrind.sh $(T)

lint: deps
	clang-format --dry-run -Werror $(FORMAT)
	scripts/layers.sh

format: deps
	clang-format -i $(FORMAT)

run:
	scripts/run.sh

install: all
	install -Dm755 $(BUILD)/sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -d $(DESTDIR)$(PREFIX)/share/sluice
	cp -R conf lua migrations $(DESTDIR)$(PREFIX)/share/sluice/
	sed 's|/usr/local|$(PREFIX)|g' conf/sluice.service >$(DESTDIR)$(PREFIX)/share/sluice/conf/sluice.service

clean:
	@scripts/testdb.sh stop
	rm -rf build

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory $(JOBS) all
	bench/run.sh

docker:
	docker compose -f docker/compose.yml up --build

fuzz: deps
	tests/fuzz/run.sh

# Each fuzz target for 60 s (FUZZ_SECS), as TAP; `make test` ends with the same run.
fuzz-smoke: deps
	tests/fuzz/smoke.sh
