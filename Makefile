# Container images, the chart checks and the kind e2e suite. The Rust build and tests are
# scripts/test.sh (cargo); nothing here is needed for them.
#   make images        docker build walshard/{operator,agent,router}:$(TAG) (needs Docker + BuildKit)
#   make kind-load     kind load the three images into $(KIND_CLUSTER)
#   make chart-validate  helm lint/template + kubernetes-validate, shellcheck, hadolint (no Docker)
#   make e2e           tests/e2e/kind-e2e.sh (kind cluster, install, failover; needs Docker + kind)
SHELL := /bin/bash
.DEFAULT_GOAL := help

DOCKER ?= docker
KIND ?= kind
TAG ?= dev
IMAGE_PREFIX ?= walshard
KIND_CLUSTER ?= walshard-e2e
IMAGES := operator agent router

.PHONY: help images $(addprefix image-,$(IMAGES)) kind-load chart-validate sync-chart-crd e2e

help:
	@echo "targets: images (walshard/{operator,agent,router}:$(TAG)), image-<name>, kind-load,"
	@echo "         chart-validate, sync-chart-crd, e2e"
	@echo "variables: TAG=$(TAG) IMAGE_PREFIX=$(IMAGE_PREFIX) KIND_CLUSTER=$(KIND_CLUSTER) DOCKER=$(DOCKER)"

images: $(addprefix image-,$(IMAGES))

# BuildKit is needed for the cache mounts and the per-Dockerfile .dockerignore files.
$(addprefix image-,$(IMAGES)): image-%:
	DOCKER_BUILDKIT=1 $(DOCKER) build -f docker/$*.Dockerfile -t $(IMAGE_PREFIX)/$*:$(TAG) .

kind-load:
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(foreach i,$(IMAGES),$(IMAGE_PREFIX)/$(i):$(TAG))

chart-validate:
	bash scripts/validate-chart.sh

sync-chart-crd:
	bash scripts/sync-chart-crd.sh

e2e:
	KIND_CLUSTER=$(KIND_CLUSTER) TAG=$(TAG) bash tests/e2e/kind-e2e.sh
