#!/bin/sh
# Runs once per instance, as root, from cloud-init's scripts-user module.
set -eu
printf 'This machine runs image %s (VO %s) at site %s.\n' {{ image_uuid }} {{ vo }} {{ site_name }} >> /etc/motd
