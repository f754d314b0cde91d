#!/bin/bash
cd /app && sort data.txt > answer.txt
