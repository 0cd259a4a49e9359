#!/bin/sh
echo hello from {{ site_name }} for {{ server_name }}
