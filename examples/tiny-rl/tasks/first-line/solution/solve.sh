#!/bin/bash
cd /app && head -n 1 data.txt > answer.txt
