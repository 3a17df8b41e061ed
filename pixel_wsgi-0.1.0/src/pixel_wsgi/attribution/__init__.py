"""Attribution: the signed first-party cookie and signed pixel URLs (keyrings, sign, verify)."""
