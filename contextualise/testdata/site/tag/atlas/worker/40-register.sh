#!/bin/bash
/usr/local/bin/register --vo {{ vo }} --tag {{ tag }} --project {{ project_id }}
