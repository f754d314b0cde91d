#!/bin/bash
cd /app && tail -n 1 data.txt > answer.txt
